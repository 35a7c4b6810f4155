"""Analyses of a ViT, pure tensor-in / tensor-out (no plotting here)."""

from .distance import attention_entropy, mean_attention_distance, patch_distances, prefix_attention_share, \
    uniform_attention_distance
from .cka import MinibatchCKA, linear_cka, unbiased_hsic
from .filters import patch_embedding_components
from .lens import ablate_heads, logit_lens, residual_stream
from .posembed import pos_embed_distance_correlation, pos_embed_similarity
from .recorder import AttentionRecorder, RecorderError, record_attention
from .rollout import attention_rollout, class_rollout, discard_lowest, fuse_heads, gradient_rollout, rollout_to_map, \
    share_on_mask
from .summary import model_geometry, summarize

__all__ = ["record_attention", "AttentionRecorder", "RecorderError", "mean_attention_distance",
           "patch_distances", "attention_rollout", "rollout_to_map", "fuse_heads", "discard_lowest",
           "gradient_rollout", "class_rollout", "pos_embed_similarity", "patch_embedding_components",
           "uniform_attention_distance", "attention_entropy", "pos_embed_distance_correlation", "share_on_mask",
           "model_geometry", "summarize", "prefix_attention_share", "linear_cka", "MinibatchCKA",
           "unbiased_hsic", "logit_lens", "residual_stream", "ablate_heads"]
