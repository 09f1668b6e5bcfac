"""The image every component runs in: the project's pipeline image (`.[pipeline]` installed).

$KLINECAST_PIPELINE_IMAGE at compile time overrides it (CI compiles with the commit's tag).
kfp is in the image, so no task installs it at start-up.
"""

import os

from klinecast import k8s

PIPELINE_IMAGE = os.environ.get("KLINECAST_PIPELINE_IMAGE", k8s.PIPELINE_IMAGE)
COMPONENT = {"base_image": PIPELINE_IMAGE, "install_kfp_package": False}
