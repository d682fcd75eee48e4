"""The raw files are read and checked once per change (issue 12: the inventory read once per run).

The workflow parses its Snakefile in the main process, for ``--report`` and in each cluster job;
:class:`detcal.validate.RawCheckCache` keeps each raw file's inventory row and problems between
parses. These tests show that a second inventory reads no raw file, that a file that changes
(size or modification time) is read again, and that the cached answer equals the uncached one,
problems included.
"""

import os

import pandas as pd
import pytest
from astropy.io import fits

from detcal import inventory, simulate, validate

SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 4, "nints": 1, "nexposures": 2}


@pytest.fixture()
def raw(tmp_path):
    simulate.write_detector_set(SPEC, str(tmp_path), 3)
    return sorted(str(p) for p in (tmp_path / "uncal").glob("*_uncal.fits"))


def _count_reads(monkeypatch):
    reads = []
    original = inventory.header_row

    def counting(path):
        reads.append(path)
        return original(path)

    monkeypatch.setattr(inventory, "header_row", counting)
    return reads


def test_second_inventory_reads_no_raw_file(raw, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache" / "raw_checks.pickle")
    reads = _count_reads(monkeypatch)
    first = validate.inventory(raw, cache=cache)
    assert sorted(reads) == raw and os.path.exists(cache)
    second = validate.inventory(raw, cache=cache)
    assert sorted(reads) == raw                      # nothing read again
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first, validate.inventory(raw))   # same as without a cache


def test_changed_file_is_read_and_checked_again(raw, tmp_path, monkeypatch):
    cache = str(tmp_path / "raw_checks.pickle")
    validate.inventory(raw, cache=cache)
    with fits.open(raw[1], mode="update") as hdul:    # damage one file: TFRAME = 0
        hdul[0].header["TFRAME"] = 0.0
    reads = _count_reads(monkeypatch)
    with pytest.raises(validate.InputErrors) as err:
        validate.inventory(raw, cache=cache)
    assert reads == [raw[1]]
    assert f"{raw[1]}: TFRAME=0.0 s: must be finite and > 0" in str(err.value)
    # the problem is cached as well: still reported without reading the file again
    with pytest.raises(validate.InputErrors) as again:
        validate.inventory(raw, cache=cache)
    assert reads == [raw[1]] and str(again.value) == str(err.value)


def test_damaged_cache_file_is_rebuilt(raw, tmp_path):
    cache = tmp_path / "raw_checks.pickle"
    cache.write_bytes(b"not a pickle")
    table = validate.inventory(raw, cache=str(cache))
    assert list(table["path"]) == raw
    assert validate.RawCheckCache(str(cache)).get(raw[0])[0]["path"] == raw[0]
