"""Sequential recommendation: MCLRec (Qin et al., SIGIR 2023) and its baselines SASRec and
CL4SRec, on MCLRec's data protocol.

  builder.py    the `seqrec` tfds builder (synthetic, or MCLRec's preprocessed files)
  sequences.py  5-core filter, re-indexing, leave-one-out prefix examples, synthetic source
  sasrec.py     the SASRec encoder and the augmenter MLPs (Flax NNX)
  augment.py    crop / mask / reorder views, as MCLRec's data loader makes them
  losses.py     L_rec, NT-Xent, L_cl1, L_cl2, the regulariser R
  metrics.py    full-ranking HR@k, NDCG@k, MRR@10; early stopping on logged metrics
  task.py       the 'mclrec' task: sasrec / cl4srec / mclrec (3-step) / mclrec_j
"""
