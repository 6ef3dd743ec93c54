"""MCLRec's data protocol (recsys/sequences.py, recsys/builder.py): the iterative 5-core
filter, re-indexing, leave-one-out prefix examples, the synthetic source, and the tfds builder
round trip of a file in the authors' "user item item ..." format."""
import ml_collections
import numpy as np

from big_batch.data import datasets
from big_batch.recsys import sequences


def test_k_core_filters_until_stable():
  # k = 3: every item but 5 has < 3 interactions; then every user has < 3 items: nothing left.
  seqs = [[1, 2, 3], [1, 2, 3], [4, 8, 9], [4, 9, 5], [5, 6, 7], [5, 6, 7]]
  assert sequences.k_core(seqs, k=3) == []
  out = sequences.k_core(seqs, k=2)
  # k = 2: only item 8 (once) goes; every user keeps >= 2 items, every item >= 2 users.
  assert out == [[1, 2, 3], [1, 2, 3], [4, 9], [4, 9, 5], [5, 6, 7], [5, 6, 7]]
  counts = {}
  for s in out:
    for i in s:
      counts[i] = counts.get(i, 0) + 1
  assert min(counts.values()) >= 2 and min(map(len, out)) >= 2


def test_leave_one_out_prefixes_and_truncation():
  splits = sequences.leave_one_out([[5, 6, 7, 8, 9]], max_len=3)
  test, = splits["test"]
  assert test["target"] == 9 and test["length"] == 3 and test["history"].tolist() == [6, 7, 8]
  valid, = splits["validation"]
  assert valid["target"] == 8 and valid["history"].tolist() == [5, 6, 7]
  assert [(r["history"].tolist(), int(r["length"]), int(r["target"])) for r in splits["train"]] \
      == [([5, 0, 0], 1, 6), ([5, 6, 0], 2, 7)]


def test_synthetic_sequences_have_the_promised_lengths_and_survive_5_core():
  seqs = sequences.synthetic_sequences(300, 150, 6, seed=1)
  assert min(map(len, seqs)) == 5 and max(map(len, seqs)) <= 50
  kept, n = sequences.reindex(sequences.k_core(seqs, 5))
  assert len(kept) > 250 and sorted({i for s in kept for i in s}) == list(range(1, n + 1))


def test_builder_reads_the_authors_text_format_from_the_manual_dir(tmp_path):
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  rng = np.random.default_rng(0)
  users = [list(rng.permutation(np.arange(100, 112))[:rng.integers(5, 9)]) for _ in range(40)]
  users.append([500, 501, 100, 101, 102])  # 500, 501 occur once: filtered out, user too.
  (manual / "Amazon_Beauty.txt").write_text(
      "\n".join(" ".join(map(str, [u + 1, *items])) for u, items in enumerate(users)) + "\n")
  data = datasets.load(ml_collections.ConfigDict(
      dict(name="seqrec", variant="beauty", data_dir=str(tmp_path))))
  kept, n = sequences.reindex(sequences.k_core(sequences.parse_lines(
      (manual / "Amazon_Beauty.txt").read_text().splitlines()), 5))
  expected = sequences.leave_one_out(kept, 50)
  assert len(kept) == 40 and n == 12
  rows = lambda r: (int(r["user"]), int(r["target"]), *map(int, r["history"]))
  for split in ("train", "validation", "test"):  # tfds stores examples in a shuffled order.
    source = data.split(split)
    got = source.read(np.arange(source.num_examples))
    got = [dict(zip(got, values)) for values in zip(*got.values())]
    assert sorted(map(rows, got)) == sorted(map(rows, expected[split]))
  test = data.split("test").read(np.arange(40))
  assert test["history"].shape == (40, 50) and test["target"].max() <= 12
