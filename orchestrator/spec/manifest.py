"""The story manifest, ``reelfarm/v1``: what a writer authors.

These models are the *template* side of reelfarm: a :class:`Story` is what the author wrote,
validated field by field. Everything derived from it (branches, render tasks, cache keys) lives
in :mod:`orchestrator.plan` and is never edited by hand.

Field-level rules (patterns, ranges, unknown fields) are pydantic's; rules that need the whole
story (references, reachability, cycles) are in :mod:`orchestrator.storygraph`, so that each
problem can be reported with the field path it belongs to.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

API_VERSION = "reelfarm/v1"

STORY_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

StoryName = Annotated[str, Field(pattern=STORY_NAME_PATTERN)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
ResourceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")]


class Model(BaseModel):
    """Base of every document model: unknown fields are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Metadata(Model):
    name: StoryName = Field(description="Names the outputs; [a-z0-9][a-z0-9-]{0,62}.")
    title: str = Field("", max_length=500, description="Free text, for display only.")


class Profile(Model):
    """The one intermediate spec every clip of the story is encoded to."""

    # Multiples of 8 (H.264 chroma, VAE latents); a backend may ask more (LTX: 32) in its check.
    width: int = Field(640, strict=True, ge=64, le=4096, multiple_of=8)
    height: int = Field(360, strict=True, ge=64, le=4096, multiple_of=8)
    fps: int = Field(24, strict=True, ge=1, le=120)


Dtype = Literal["bfloat16", "float16", "float32"]
Offload = Literal["none", "model", "sequential"]


class RendererSpec(Model):
    """Renderer settings as written: story-wide defaults, or a shot's overrides.

    Every field is optional here; :meth:`resolve` merges a shot's overrides over the story's
    defaults over the built-in defaults.
    """

    backend: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="A registered backend: previz (CPU) | diffusers (GPU) | ...",
    )
    model: str | None = Field(
        None, min_length=1, max_length=400, description="diffusers: a hub id or a local directory"
    )
    revision: str | None = Field(
        None, min_length=1, max_length=200, description="Model revision; part of the cache key."
    )
    pipeline: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="diffusers: pipeline family (ltx, wan, svd); read from the model when omitted",
    )
    steps: int | None = Field(None, strict=True, ge=1, le=1000)
    guidance: float | None = Field(None, strict=True, ge=0.0, le=100.0)
    negative_prompt: str | None = Field(None, max_length=4000)
    dtype: Dtype | None = Field(
        None, description="diffusers: default bfloat16 on GPU, float32 on CPU"
    )
    offload: Offload | None = Field(None, description="diffusers: none | model | sequential")
    vae_tiling: bool | None = None
    gpus: float | None = Field(
        None, strict=True, ge=0, le=64, description="GPUs one render needs"
    )
    gpu_memory_gb: float | None = Field(
        None, strict=True, gt=0, le=4096, description="GPU memory one render needs, in GB"
    )
    resources: dict[ResourceName, StrictFloat] | None = Field(
        None, description="Custom Ray resources one render needs, e.g. a GPU type"
    )

    def merged_over(self, base: RendererSpec) -> RendererSpec:
        """This spec's set fields over ``base``'s."""
        data = base.model_dump()
        data.update(self.model_dump(exclude_none=True))
        return RendererSpec(**data)


class Choice(Model):
    class Option(Model):
        label: str = Field(min_length=1, max_length=200)
        next: Id

    prompt: str = Field("", max_length=1000)
    default: int = Field(0, strict=True, ge=0)
    window: float = Field(
        5.0,
        strict=True,
        gt=0,
        le=600,
        description="Seconds before the segment ends when the player shows the choice; "
        "the default option is taken when it runs out. Playback only: not part of any key.",
    )
    options: list[Option] = Field(min_length=1, max_length=64)

    @field_validator("options")
    @classmethod
    def _labels_unique(cls, options: list[Choice.Option]) -> list[Choice.Option]:
        seen: set[str] = set()
        for i, opt in enumerate(options):
            if opt.label in seen:
                # ``at`` narrows the error's location to the repeated label (see pydantic_errors)
                raise PydanticCustomError(
                    "duplicate_label",
                    "choice label {label} is used twice",
                    {"label": repr(opt.label), "at": (i, "label")},
                )
            seen.add(opt.label)
        return options

    @model_validator(mode="after")
    def _default_in_range(self) -> Choice:
        if self.default >= len(self.options):
            raise PydanticCustomError(
                "default_out_of_range",
                f"default is {self.default} but there are only {len(self.options)} options",
                {"at": ("default",)},
            )
        return self


class Shot(Model):
    id: Id
    prompt: str = Field(min_length=1, max_length=4000)
    duration: float = Field(
        strict=True, gt=0, le=600, description="Seconds; frames = round(duration * fps)"
    )
    continuity: Literal["cut", "previous"] = Field(
        "cut", description="previous: condition on the previous shot's last frame"
    )
    seed: int | None = Field(None, strict=True, ge=0, le=2**63 - 1)
    renderer: RendererSpec = Field(default_factory=RendererSpec)


class SourceRef(Model):
    """Where an imported segment came from (``reelfarm import``); display and tooling only.

    Not part of any cache key: editing it, or importing the same source again, re-renders
    nothing.
    """

    file: str = Field(min_length=1, max_length=500, description="The source file, as given")
    name: str = Field(
        min_length=1, max_length=500, description="The passage, knot or node name in the source"
    )
    line: int | None = Field(
        None, ge=1, description="1-based line in the source, when it has lines"
    )


class Segment(Model):
    id: Id
    shots: list[Shot] = Field(min_length=1, max_length=1000)
    choice: Choice | None = None
    next: Id | None = None
    source: SourceRef | None = Field(
        None, description="Where an imported segment came from; never part of a cache key"
    )

    @model_validator(mode="after")
    def _one_way_out(self) -> Segment:
        if self.choice is not None and self.next is not None:
            raise PydanticCustomError(
                "choice_and_next",
                "a segment ends in a choice or a next, not both",
                {"at": ("next",)},
            )
        return self

    @property
    def successors(self) -> list[str]:
        """Segment ids this segment leads to, in option order (the default option first)."""
        if self.next is not None:
            return [self.next]
        if self.choice is None:
            return []
        order = [self.choice.default] + [
            i for i in range(len(self.choice.options)) if i != self.choice.default
        ]
        out: list[str] = []
        for i in order:
            nxt = self.choice.options[i].next
            if nxt not in out:
                out.append(nxt)
        return out

    @property
    def is_ending(self) -> bool:
        return self.choice is None and self.next is None


Masters = Literal["all", "endings"] | list[Annotated[list[Id], Field(min_length=1)]]


class StorySpec(Model):
    profile: Profile = Field(default_factory=Profile)
    renderer: RendererSpec = Field(default_factory=RendererSpec)
    seed: int = Field(0, strict=True, ge=0, le=2**63 - 1)
    start: Id
    masters: Masters = "all"
    segments: list[Segment] = Field(min_length=1, max_length=10000)


class Story(Model):
    apiVersion: Literal["reelfarm/v1"]  # noqa: N815 - the manifest's own spelling
    kind: Literal["Story"]
    metadata: Metadata
    spec: StorySpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def segment(self, segment_id: str) -> Segment:
        return self.segments_by_id[segment_id]

    @property
    def segments_by_id(self) -> dict[str, Segment]:
        return {s.id: s for s in self.spec.segments}
