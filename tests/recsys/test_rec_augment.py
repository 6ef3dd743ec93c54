"""MCLRec's crop / mask / reorder (recsys/augment.py) against the constraints of the code's
`mclrec_aug`: crop keeps one contiguous window at the front, mask zeroes floor(n/2) distinct
positions with the padding id, reorder permutes one window of floor(0.8 n) items; two distinct
operations per sequence, none for length 1."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from big_batch.recsys import augment

N = 12


def padded(items):
  row = np.zeros(N, np.int32)
  row[:len(items)] = items
  return jnp.asarray(row), jnp.int32(len(items))


def test_crop_keeps_one_contiguous_window_moved_to_the_front():
  items = list(range(11, 20))  # n = 9: floor(0.5 * 9) = 4 items kept.
  seq, n = padded(items)
  starts = set()
  for i in range(40):
    view, length = augment.crop(jax.random.key(i), seq, n, 0.5)
    view, length = np.asarray(view), int(length)
    assert length == math.floor(0.5 * 9)
    start = items.index(view[0])
    assert list(view[:length]) == items[start:start + length]
    assert (view[length:] == 0).all()
    starts.add(start)
  assert starts == set(range(9 - 4 + 1))  # Every start in [0, n - m] occurs.


def test_mask_zeroes_floor_half_distinct_positions_with_the_padding_id():
  items = list(range(1, 8))  # n = 7: 3 masked.
  seq, n = padded(items)
  for i in range(20):
    view, length = augment.mask(jax.random.key(i), seq, n, 0.5)
    view = np.asarray(view)
    assert int(length) == 7
    zeroed = [p for p in range(7) if view[p] == 0]
    assert len(zeroed) == 3
    assert all(view[p] == items[p] for p in range(7) if p not in zeroed)
    assert (view[7:] == 0).all()


def test_reorder_permutes_exactly_one_window():
  items = list(range(1, 11))  # n = 10: a window of 8.
  seq, n = padded(items)
  moved_any = False
  for i in range(20):
    view, length = augment.reorder(jax.random.key(i), seq, n, 0.8)
    view = np.asarray(view)
    assert int(length) == 10 and (view[10:] == 0).all()
    assert sorted(view[:10]) == items  # A permutation: the multiset is kept.
    changed = [p for p in range(10) if view[p] != items[p]]
    if changed:
      moved_any = True
      # Some window [c, c + 8) holds every changed position and is a permutation of itself.
      fits = [c for c in range(3) if min(changed) >= c and max(changed) < c + 8
              and sorted(view[c:c + 8]) == items[c:c + 8]]
      assert fits
  assert moved_any


def test_two_views_use_two_distinct_operations_and_leave_length_one_alone():
  rows = [list(range(1, 9)), list(range(3, 13)), [7]]
  seqs = jnp.stack([padded(r)[0] for r in rows] * 30)
  lengths = jnp.asarray([len(r) for r in rows] * 30, jnp.int32)
  v1, l1, v2, l2, ops = map(np.asarray, augment.two_views(jax.random.key(0), seqs, lengths))
  pairs = set()
  for b in range(len(seqs)):
    n = int(lengths[b])
    if n == 1:
      assert (ops[b] == -1).all()
      assert (v1[b] == np.asarray(seqs[b])).all() and (v2[b] == np.asarray(seqs[b])).all()
      continue
    assert ops[b, 0] != ops[b, 1] and set(ops[b]) <= {0, 1, 2}
    pairs.add(tuple(ops[b]))
    for view, length, op in ((v1[b], l1[b], ops[b, 0]), (v2[b], l2[b], ops[b, 1])):
      original = list(np.asarray(seqs[b])[:n])
      if op == augment.CROP:
        assert length == n // 2
        start = original.index(view[0])
        assert list(view[:length]) == original[start:start + length]
      elif op == augment.MASK:
        assert length == n and (view[:n] == 0).sum() == n // 2
      else:
        assert length == n and sorted(view[:n]) == sorted(original)
  assert len(pairs) == 6  # Every ordered pair of random.sample(range(3), k=2) occurs.
