"""Pure media functions: each module turns one input file into output files.

Built-ins are listed explicitly; user functions are added by dotted path in pipeline.yaml.
"""

from functions.errors import FunctionError, MediaError, ParamsError, UnsupportedMedia
from functions.spec import FunctionSpec, Output, Params, media_function

BUILTIN_FUNCTIONS = [
    "functions.thumbnail",
    "functions.filter",
    "functions.transcode",
    "functions.copy",
    "functions.screen",
]

__all__ = [
    "BUILTIN_FUNCTIONS",
    "FunctionError",
    "FunctionSpec",
    "MediaError",
    "Output",
    "Params",
    "ParamsError",
    "UnsupportedMedia",
    "media_function",
]
