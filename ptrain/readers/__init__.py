"""Plain-Python readers for the benchmark formats ptrain trains on.

Readers only parse and validate: they return ``list[dict]`` of plain examples and never tokenise, so the
same examples feed any backbone. A malformed file raises :class:`DataFormatError` naming file, line and
field; a missing file raises ``FileNotFoundError`` naming the files that were expected.
"""

from ptrain.readers.errors import DataFormatError
from ptrain.readers.glue import read_glue, read_glue_tsv
from ptrain.readers.ontonotes import read_ontonotes
from ptrain.readers.squad import read_squad
from ptrain.readers.srl import read_srl, read_srl_split
from ptrain.readers.superglue import (
    read_boolq,
    read_cb,
    read_copa,
    read_multirc,
    read_record,
    read_rte,
    read_superglue,
    read_wic,
    read_wsc,
)

__all__ = [
    "DataFormatError",
    "read_boolq",
    "read_cb",
    "read_copa",
    "read_glue",
    "read_glue_tsv",
    "read_multirc",
    "read_ontonotes",
    "read_record",
    "read_rte",
    "read_squad",
    "read_srl",
    "read_srl_split",
    "read_superglue",
    "read_wic",
    "read_wsc",
]
