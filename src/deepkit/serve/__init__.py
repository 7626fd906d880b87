"""``deepkit serve``: a trained run or an ONNX export over HTTP (FastAPI + uvicorn), with dynamic batching.

Written once for every family: the served model is described by the sidecar of its
:class:`~deepkit.families.base.ExportSpec` (inputs, outputs, classes), so no code here asks which family it is.
"""

from deepkit.serve.app import ServeConfig, create_app
from deepkit.serve.backends import open_backend

__all__ = ["ServeConfig", "create_app", "open_backend"]
