"""The TOQ account's layout, as the Go system's Terraform (aws/main.tf of
projeto-toq/toq_server) created it, and what this project puts into it (docs/contract.md
§11). One mapping of names, each overridable from the command line or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUNTIME = "python3.12"
ARCHITECTURE = "x86_64"  # what scripts/build_lambdas.sh builds the wheels for
DEFAULT_BUCKET = "toq-listing-medias"
DEFAULT_FFMPEG_PATH = "/opt/bin/ffmpeg"  # the account's ffmpeg layer


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function of the pipeline.

    ``module`` names the handler module and the zip (aws/lambdas/bin/<module>.zip);
    ``name`` is a template with ``{env}``; ``placeholder`` is the definitions' ARN
    placeholder; ``needs_bucket`` / ``needs_ffmpeg`` / ``starts_executions`` say which
    environment the Python handler needs that the Go one did not (the Go code had
    defaults); ``needs_callback_target`` marks the function that must already hold
    CALLBACK_URL and CALLBACK_SECRET.
    """

    module: str
    name: str
    placeholder: str
    needs_bucket: bool = False
    needs_ffmpeg: bool = False
    starts_executions: bool = False
    needs_callback_target: bool = False

    @property
    def handler(self) -> str:
        return f"media_jobs.pipeline.handlers.{self.module}.handler"


# In deploy order. The callback is the one both state machines call: callback-dispatch
# holds CALLBACK_URL/CALLBACK_SECRET in the account; listing-media-callback-{env} has
# neither and is left alone.
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        "validate",
        "listing-media-validate-{env}",
        "ValidateFunctionArn",
        needs_bucket=True,
        starts_executions=True,
    ),
    FunctionSpec(
        "thumbnails", "listing-media-thumbnails-{env}", "ThumbnailsFunctionArn", needs_bucket=True
    ),
    FunctionSpec(
        "video_thumbnails",
        "listing-media-video_thumbnails-{env}",
        "VideoThumbnailsFunctionArn",
        needs_bucket=True,
        needs_ffmpeg=True,
    ),
    FunctionSpec("consolidate", "listing-media-consolidate-{env}", "ConsolidateFunctionArn"),
    FunctionSpec("zip", "listing-media-zip-{env}", "ZipFunctionArn", needs_bucket=True),
    FunctionSpec(
        "callback",
        "listing-media-callback-dispatch-{env}",
        "CallbackFunctionArn",
        needs_callback_target=True,
    ),
)
MODULES = tuple(spec.module for spec in FUNCTIONS)


@dataclass(frozen=True)
class MachineSpec:
    kind: str  # processing | finalization
    name: str  # template with {env}
    definition_file: str
    arn_variable: str  # environment variable that may give the ARN directly


STATE_MACHINES: tuple[MachineSpec, ...] = (
    MachineSpec(
        "processing",
        "listing-media-processing-sm-{env}",
        "media_processing_pipeline.json",
        "PROCESSING_STATE_MACHINE_ARN",
    ),
    MachineSpec(
        "finalization",
        "listing-media-finalization-sm-{env}",
        "media_finalization_pipeline.json",
        "FINALIZATION_STATE_MACHINE_ARN",
    ),
)
MEDIACONVERT_ROLE = "toq-media-processing-mediaconvert-{env}"
# The EventBridge rule Step Functions manages for createJob.sync.
MEDIACONVERT_SYNC_RULE = "StepFunctionsGetEventsForMediaConvertJobRule"


@dataclass
class Names:
    """The resolved names of one deploy (``{env}`` filled, overrides applied)."""

    env: str
    functions: dict[str, str] = field(default_factory=dict)  # module -> function name
    machines: dict[str, str] = field(default_factory=dict)  # kind -> name or ARN
    mediaconvert_role: str = ""  # name or ARN

    @classmethod
    def resolve(
        cls,
        env: str,
        function_overrides: dict[str, str],
        machine_overrides: dict[str, str],
        mediaconvert_role: str | None,
    ) -> Names:
        unknown = sorted(set(function_overrides) - set(MODULES))
        if unknown:
            raise ValueError(
                f"unknown function module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}"
            )
        kinds = {spec.kind for spec in STATE_MACHINES}
        unknown = sorted(set(machine_overrides) - kinds)
        if unknown:
            raise ValueError(
                f"unknown state machine kind(s) {', '.join(unknown)}; known: {', '.join(kinds)}"
            )
        return cls(
            env=env,
            functions={
                spec.module: function_overrides.get(spec.module) or spec.name.format(env=env)
                for spec in FUNCTIONS
            },
            machines={
                spec.kind: machine_overrides.get(spec.kind) or spec.name.format(env=env)
                for spec in STATE_MACHINES
            },
            mediaconvert_role=mediaconvert_role or MEDIACONVERT_ROLE.format(env=env),
        )


def parse_overrides(values: list[str], what: str) -> dict[str, str]:
    """``key=value`` pairs (repeated options, or comma-separated in one string)."""
    pairs: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, name = item.partition("=")
            if not sep or not key.strip() or not name.strip():
                raise ValueError(f"{what}: expected key=value, got {item!r}")
            pairs[key.strip()] = name.strip()
    return pairs
