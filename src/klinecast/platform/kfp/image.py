"""The image every component runs in: the project's pipeline image (`.[pipeline]` installed).

kfp is in the image, so no task installs it at start-up. Another image (CI's build of the
commit) is set when compiling: `klinecast pipeline compile --image` (or
$KLINECAST_PIPELINE_IMAGE), which rewrites the compiled executors' image.
"""

from klinecast.platform.k8s import PIPELINE_IMAGE

COMPONENT = {"base_image": PIPELINE_IMAGE, "install_kfp_package": False}
