"""Every byte the pack reads or writes on disk.

* ``atomic``: files written whole or not at all, safe names, writable folders;
* ``sniff``: what a file that should be safetensors really is (pickle, HTML, truncated...);
* ``images``: photos and IMAGE arrays to RGB uint8;
* ``export``: the kohya LoRA file and its metadata;
* ``video``: every N-th frame of a video file (OpenCV).

Only ``atomic``, ``sniff`` and ``images`` are imported here; ``export`` needs torch, ``video`` OpenCV.
"""

from .atomic import check_file_name, check_writable_folder, write_atomic
from .images import float_to_uint8, load_image, to_rgb_list
from .sniff import file_problem, path_problem

__all__ = ["check_file_name", "check_writable_folder", "file_problem", "float_to_uint8", "load_image",
           "path_problem", "to_rgb_list", "write_atomic"]
