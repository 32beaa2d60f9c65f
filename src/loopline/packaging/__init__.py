"""Package a registered model version as a container image (build context + optional build)."""

from loopline.packaging.builders import (
    BuilderError,
    Detected,
    detect,
    select_builder,
)
from loopline.packaging.package import (
    FingerprintMismatchError,
    ImageBuildError,
    OutDirNotEmptyError,
    PackageResult,
    PackagingError,
    UnknownModelVersionError,
    build_package,
)
from loopline.packaging.requirements import PinnedRequirements, pin_requirements

__all__ = [
    "BuilderError",
    "Detected",
    "FingerprintMismatchError",
    "ImageBuildError",
    "OutDirNotEmptyError",
    "PackageResult",
    "PackagingError",
    "PinnedRequirements",
    "UnknownModelVersionError",
    "build_package",
    "detect",
    "pin_requirements",
    "select_builder",
]
