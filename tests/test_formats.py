"""viewal.labelling.formats: COCO RLE (column-major) and Label Studio brush RLE round trips, annotator batches;
the COCO export/import of viewal.labelling.hitl."""
import json

import numpy as np
import pytest

from viewal.labelling.formats import RleError, annotator_batches, brush_decode, brush_encode, coco_decode, coco_encode


def column_major_runs(mask):
    """COCO's uncompressed counts written out by hand: runs of 0/1 down the columns, starting with zeros."""
    flat = np.asarray(mask, bool).T.reshape(-1)            # column by column
    runs, cur, n = [], False, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            runs.append(n)
            cur, n = v, 1
    return runs + [n]


@pytest.mark.parametrize("shape", [(7, 13), (13, 7), (1, 9), (32, 48)])
def test_coco_round_trip_non_square(shape):
    rng = np.random.default_rng(sum(shape))
    m = rng.random(shape) < 0.4
    rle = coco_encode(m)
    assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
    back = coco_decode(json.loads(json.dumps(rle)), shape)  # through JSON, as in the files
    assert back.shape == shape and back.dtype == bool and np.array_equal(back, m)


def test_coco_is_column_major():
    # an L in a 3x4 frame: column-major runs [0, 4, 2, 1, 2, 1, 2]; row-major would be [0, 5, 3, 1, 3]
    m = np.zeros((3, 4), bool)
    m[0, :] = True
    m[:, 0] = True
    from pycocotools import mask as cocomask

    assert column_major_runs(m) == [0, 4, 2, 1, 2, 1, 2]
    uncompressed = {"size": [3, 4], "counts": column_major_runs(m)}
    assert np.array_equal(coco_decode(uncompressed, (3, 4)), m)
    # our string equals pycocotools' compression of the hand-written column-major runs
    ref = cocomask.frPyObjects(uncompressed, 3, 4)["counts"].decode()
    assert coco_encode(m)["counts"] == ref
    # the transposed mask has other runs: a mix-up of rows and columns cannot round-trip
    assert coco_encode(m.T)["counts"] != ref
    # a single pixel at row 1, column 2 of a 3x4 frame sits at column-major position 2 * 3 + 1 = 7
    one = np.zeros((3, 4), bool)
    one[1, 2] = True
    assert np.array_equal(coco_decode({"size": [3, 4], "counts": [7, 1, 4]}, (3, 4)), one)


def test_coco_decode_errors():
    with pytest.raises(RleError, match="q7: COCO RLE size 4x5 .* differs from the frame's 5x4"):
        coco_decode(coco_encode(np.ones((4, 5), bool)), (5, 4), what="q7")
    with pytest.raises(RleError, match="add up to 3\\*4"):
        coco_decode({"size": [3, 4], "counts": [5, 1]}, (3, 4))
    with pytest.raises(RleError, match="not a COCO RLE"):
        coco_decode([1, 2, 3])
    with pytest.raises(RleError, match="size must be"):
        coco_decode({"size": [3], "counts": "x"})
    with pytest.raises(RleError, match="q2: undecodable COCO RLE counts"):
        coco_decode({"size": [3, 4], "counts": "zzzz!!"}, (3, 4), what="q2")


@pytest.mark.parametrize("shape", [(5, 9), (9, 5)])
def test_brush_round_trip_with_sdk_converter(shape):
    pytest.importorskip("label_studio_sdk")
    from label_studio_sdk.converter.brush import decode_rle

    m = np.zeros(shape, bool)
    m[1:4, 2:4] = True
    m[-1, -1] = True
    rle = brush_encode(m)
    assert np.array_equal(brush_decode(rle, shape), m)
    # row-major RGBA, as Label Studio paints it: pixel (r, c) is at 4 * (r * W + c)
    flat = decode_rle(rle).reshape(-1, 4)
    assert flat[shape[1] * 1 + 2].tolist() == [255] * 4 and flat[0].tolist() == [0] * 4
    with pytest.raises(RleError, match="needs"):
        brush_decode(rle, (shape[0] + 1, shape[1]))
    with pytest.raises(RleError, match="list of byte values"):
        brush_decode([], shape)


def test_annotator_batches_disjoint_balanced_deterministic():
    b = annotator_batches(10, 3)
    assert [x.tolist() for x in b] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(np.concatenate(b).tolist()) == list(range(10))
    assert [x.tolist() for x in annotator_batches(2, 3)] == [[0], [1], []]
    with pytest.raises(ValueError, match="annotators must be >= 1"):
        annotator_batches(3, 0)
