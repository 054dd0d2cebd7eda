"""Work that runs on cluster nodes: renderer actors, render backends, clip encoding, assembly."""
