"""MCLRec (Qin et al., SIGIR 2023) and its baselines on synthetic sequences (the `sweep`
variant of `seqrec`: 500 users, 241 items after 5-core filtering, 5,072 training prefixes,
histories cut to 20; recsys/builder.py): `config.mclrec.method` is sasrec, cl4srec, mclrec
(the code's three-step alternation) or mclrec_j (joint). SASRec here is a 1-block, d = 32
model (dropout 0.2) that trains in seconds on a CPU; Adam lr 1e-3 for the encoder and the
augmenters, batch 256, 2 epochs, lambda = beta = 0.1 (gamma = 0.1 beta is inside the code's
R), tau = 1, crop / mask / reorder ratios 0.5 / 0.5 / 0.8 as MCLRec.yaml.

    python -m big_batch.main --config configs/recsys_mclrec.py --workdir /tmp/recsys_mclrec
    python -m big_batch.main --config configs/recsys_mclrec.py \
        --config.mclrec.method=sasrec --workdir /tmp/recsys_sasrec

The paper's model and data: `--config.model.hidden=64 --config.model.blocks=2
--config.model.inner=256 --config.model.dropout=0.5 --config.model.attn_dropout=0.5
--config.data.variant=synthetic` (2,000 users; 20 epochs of MCLRec showed an ETA of about
2 h on 2 shared CPU cores, so it was not run to the end here), or
`--config.data.variant=beauty` (sports, yelp, toys) once the MCLRec repository's
Amazon_Beauty.txt (etc.) is placed in `<data_dir>/downloads/manual/`.

Evaluation: full ranking over all items of the validation and test targets (leave-one-out),
HR@{5,10,20}, NDCG@{5,10,20}, MRR@10, every epoch. The trainer has no early stopping:
`big_batch.recsys.metrics.early_stopping(records, 'validation/mrr@10', 10)` on the run's
metrics.jsonl picks the code's early-stopped result.

Measured (experiments/mclrec.py, this setting, 3 seeds; results/mclrec/table.md): test
NDCG@10 at batch 256 SASRec 0.233, CL4SRec 0.113, MCLRec 0.215, MCLRec-J 0.130; at batch 16
0.318, 0.282, 0.289, 0.271. This config as shipped (MCLRec, seed 0): test NDCG@10 0.215,
HR@10 0.458, 29 s. `:quick` trains 12 steps of batch 32 on the `small` variant
(300 users) in seconds, for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

BATCH = 256
EPOCHS = 2
STEPS_PER_EPOCH = 20  # 5,072 training prefixes / 256, rounded up.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/recsys_mclrec.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "mclrec"
  config.data = dict(name="seqrec", variant="sweep", data_dir=placeholder(str),
                     in_memory=True)
  config.model = dict(name="sasrec", hidden=32, blocks=1, heads=2, inner=64, dropout=0.2,
                      attn_dropout=0.2)
  # tasks: recsys/task.py; lmd is lambda (L_cl1), beta weighs L_cl2 + R.
  config.mclrec = dict(method="mclrec", lmd=0.1, beta=0.1, tau=1.0, crop_ratio=0.5,
                       mask_ratio=0.5, reorder_ratio=0.8, regularizer=True)
  config.optimizer = dict(name="adamw", learning_rate=1e-3, weight_decay=0.0)
  config.augmenter_optimizer = dict(name="adamw", learning_rate=1e-3, weight_decay=0.0)
  config.batch = dict(size=BATCH, accumulation_steps=1)
  config.num_epochs = float(EPOCHS)
  config.num_steps = placeholder(int)
  config.num_examples = placeholder(int)
  config.log_every = STEPS_PER_EPOCH
  config.evals = dict(validation=dict(every=STEPS_PER_EPOCH, split="validation",
                                      batch_size=128),
                      test=dict(every=STEPS_PER_EPOCH, split="test", batch_size=128))
  config.checkpoint_every = STEPS_PER_EPOCH
  config.keep_checkpoints = 2
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.data.variant = "small"
    config.model.update(hidden=32, blocks=1, inner=64)
    config.batch.size = 32
    config.num_epochs = None
    config.num_steps = 12
    config.log_every = 4
    config.evals = dict(validation=dict(every=6, split="validation", batch_size=64),
                        test=dict(every=12, split="test", batch_size=64))
    config.checkpoint_every = 6
  return config
