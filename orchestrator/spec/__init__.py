"""The manifest: its models, safe loading with marks, the problems it reports, the story-graph
rules and the JSON Schema. Imports nothing from the stages above it."""
