"""Sequential-recommendation data (MCLRec's protocol) as a tfds builder in array_record format.

Every variant goes through recsys/sequences.py: 5-core filtering, items re-indexed 1..n (0 is
padding), leave-one-out splits 'train' / 'validation' / 'test' of prefix examples
{'history': int32 [max_len] left-aligned, 'length', 'target', 'user'}.

Sources:
  synthetic  (default) 2,000 users, 1,000 items, 20 topics of a latent-topic Markov chain,
             lengths 5-50 (`sequences.synthetic_sequences`), generated offline
  small      300 users, 150 items, 6 topics: for tests and `:quick` configs
  sweep      500 users, 250 items, 8 topics, histories cut to their last 20 items: for
             batch-size sweeps on a CPU (experiments/mclrec.py)
  beauty, sports, yelp, toys
             the MCLRec repository's preprocessed files (QinHsiu/MCLRec, dataset/<name>/
             <name>.txt, "user item item ..." per line), read from the tfds manual directory
             `<data_dir>/downloads/manual/`; nothing is downloaded.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from big_batch.recsys import sequences

MAX_LEN = 50  # seq.yaml MAX_ITEM_LIST_LENGTH.
K_CORE = 5  # seq.yaml min_user_inter_num, min_item_inter_num.


@dataclasses.dataclass
class SeqRecConfig(tfds.core.BuilderConfig):
  file: str = ""  # A manual file name; empty: the synthetic generator.
  num_users: int = 2000
  num_items: int = 1000
  num_topics: int = 20
  seed: int = 0
  max_len: int = MAX_LEN


class SeqRec(tfds.core.GeneratorBasedBuilder):
  """Leave-one-out next-item examples of 5-core filtered user sequences."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      SeqRecConfig(name="synthetic"),
      SeqRecConfig(name="small", num_users=300, num_items=150, num_topics=6),
      SeqRecConfig(name="sweep", num_users=500, num_items=250, num_topics=8, max_len=20),
      SeqRecConfig(name="beauty", file="Amazon_Beauty.txt"),
      SeqRecConfig(name="sports", file="Amazon_Sports_and_Outdoors.txt"),
      SeqRecConfig(name="yelp", file="Yelp.txt"),
      SeqRecConfig(name="toys", file="Amazon_Toys_and_Games.txt"),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Place the MCLRec repository's preprocessed file (dataset/<name>/<name>.txt of "
      "QinHsiu/MCLRec, e.g. Amazon_Beauty.txt) in <data_dir>/downloads/manual/.")

  def _info(self) -> tfds.core.DatasetInfo:
    max_len = self.builder_config.max_len
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "history": tfds.features.Tensor(shape=(max_len,), dtype=np.int32),
            "length": tfds.features.Scalar(dtype=np.int32),
            "target": tfds.features.Scalar(dtype=np.int32),
            "user": tfds.features.Scalar(dtype=np.int32),
        }),
        homepage="https://github.com/QinHsiu/MCLRec",
    )

  def _sequences(self, dl_manager) -> list[list[int]]:
    config = self.builder_config
    if not config.file:
      return sequences.synthetic_sequences(config.num_users, config.num_items,
                                           config.num_topics, config.seed, max_len=50)
    path = epath.Path(dl_manager.manual_dir) / config.file
    if not path.exists():
      raise FileNotFoundError(f"seqrec variant {config.name!r} reads {path}, which does not "
                              f"exist. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return sequences.parse_lines(path.read_text().splitlines())

  def _split_generators(self, dl_manager):
    seqs, _ = sequences.reindex(sequences.k_core(self._sequences(dl_manager), K_CORE))
    splits = sequences.leave_one_out(seqs, self.builder_config.max_len)
    return {name: self._generate_examples(rows) for name, rows in splits.items()}

  def _generate_examples(self, rows):
    for i, row in enumerate(rows):
      yield i, row
