"""Plain-torch ViT / DeiT / BERT that mirror Hugging Face `transformers` math exactly, with HF
parameter names (state_dict keys are the HF checkpoint keys), and no dependency on `transformers`.

Mirrored classes (transformers 4.x):
  ViTForImageClassification                 -> ViTForImageClassification here   (prefix "vit.")
  DeiTForImageClassificationWithTeacher     -> DeiTForImageClassificationWithTeacher (prefix "deit.")
  BertForSequenceClassification             -> BertForSequenceClassification    (prefix "bert.")
  BertModel (no pooler needed for MiniLM)   -> BertModel

Math notes (each checked against the HF source):
  * GELU is the exact erf form (HF hidden_act "gelu" == torch.nn.functional.gelu, approximate="none").
  * Attention: heads split from the channel dim as view(B, T, NH, HS).permute(0, 2, 1, 3)
    (HF transpose_for_scores); scores = q @ k^T / sqrt(HS) (+ mask for BERT); softmax over keys;
    dropout on the probabilities; context permuted back and viewed as [B, T, D].
  * ViT/DeiT are pre-LN:  h = x + dense(attn(ln_before(x)));  y = h + fc2(gelu(fc1(ln_after(h)))).
    Final `layernorm`, classifier on token 0 (DeiT: cls_classifier on token 0 and
    distillation_classifier on token 1, logits = (cls + distillation) / 2).
  * BERT is post-LN:  a = LN1(x + dense(attn(x)));  y = LN2(a + fc2(gelu(fc1(a)))).
    Embeddings: LN(word + token_type + position), position ids 0..T-1. Extended attention mask
    (1 - mask) * finfo(dtype).min is added to the scaled scores (as HF's get_extended_attention_mask);
    a padded query row still sees the real keys, so nothing becomes NaN.
    Pooler: tanh(dense(h[:, 0])). Loss as HF's problem_type inference: num_labels == 1 -> MSE
    (regression) on logits.squeeze() vs labels.squeeze(); otherwise CrossEntropy (mean).
  * Dropout: every place HF has one (embeddings, attention probs, self-output, output, BERT
    classifier); p = 0 by default so the models are deterministic. Set hidden_dropout_prob /
    attention_probs_dropout_prob in the config for training benchmarks.

The classes work in any float dtype (.double() for goldens, float32 for benchmarks).
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# configs


@dataclass
class ViTConfig:
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_labels: int = 1000
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    distillation_token: bool = False  # True -> DeiT layout (cls, distillation, patches)

    @property
    def num_patches(self):
        return (self.image_size // self.patch_size) ** 2

    @property
    def seq_len(self):
        return self.num_patches + (2 if self.distillation_token else 1)

    def to_dict(self):
        return asdict(self)


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    num_labels: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0

    @classmethod
    def from_hf(cls, d, **overrides):
        """From a Hugging Face config.json dict (e.g. MiniLM's)."""
        kw = dict(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
            num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
            intermediate_size=d["intermediate_size"],
            max_position_embeddings=d["max_position_embeddings"],
            type_vocab_size=d["type_vocab_size"], layer_norm_eps=d.get("layer_norm_eps", 1e-12),
            hidden_act=d.get("hidden_act", "gelu"),
        )
        kw.update(overrides)
        return cls(**kw)

    def to_dict(self):
        return asdict(self)


# Sizes for benchmarks (HF hub configs of the same names).
VIT_PRESETS = {
    "vit_tiny_golden": dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                            image_size=12, patch_size=4, num_labels=5),
    "vit_base_patch16_224": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "deit_tiny_patch16_224": dict(hidden_size=192, num_layers=12, num_heads=3, intermediate_size=768),
    "deit_small_patch16_224": dict(hidden_size=384, num_layers=12, num_heads=6, intermediate_size=1536),
    "deit_base_patch16_224": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
}
BERT_PRESETS = {
    "bert_tiny_golden": dict(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
                             intermediate_size=64, max_position_embeddings=16, num_labels=3),
    "minilm_l6_h384": dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),
    "bert_base_uncased": dict(),
}


def _act(name):
    if name != "gelu":
        raise ValueError(f"hidden_act {name!r} not mirrored (only exact-erf 'gelu')")
    return F.gelu  # erf form


# --------------------------------------------------------------------------------------------
# shared pieces


class SelfAttention(nn.Module):
    """HF ViTSelfAttention / BertSelfAttention (absolute positions, no cross-attention, no cache)."""

    def __init__(self, hidden_size, num_heads, attn_dropout):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        self.num_attention_heads = num_heads
        self.attention_head_size = hidden_size // num_heads
        self.all_head_size = hidden_size
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(attn_dropout)

    def transpose_for_scores(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, hidden_states, extended_mask=None):
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        if extended_mask is not None:
            scores = scores + extended_mask
        probs = F.softmax(scores, dim=-1)
        probs = self.dropout(probs)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.shape[0], ctx.shape[1], self.all_head_size)


class _Dense(nn.Module):
    """A module holding `dense` (+ dropout), to reproduce HF's *.output.dense / intermediate.dense names."""

    def __init__(self, d_in, d_out, dropout=0.0):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.dense(x))


# --------------------------------------------------------------------------------------------
# ViT / DeiT


class PatchEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.projection = nn.Conv2d(cfg.num_channels, cfg.hidden_size,
                                    kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, pixel_values):
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.distillation_token:
            self.distillation_token = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_embeddings = PatchEmbeddings(cfg)
        self.position_embeddings = nn.Parameter(torch.zeros(1, cfg.seq_len, d))
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.has_dist = cfg.distillation_token

    def forward(self, pixel_values):
        x = self.patch_embeddings(pixel_values)
        b = x.shape[0]
        toks = [self.cls_token.expand(b, -1, -1)]
        if self.has_dist:
            toks.append(self.distillation_token.expand(b, -1, -1))
        x = torch.cat(toks + [x], dim=1)
        return self.dropout(x + self.position_embeddings)


class ViTAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.attention_probs_dropout_prob)
        self.output = _Dense(cfg.hidden_size, cfg.hidden_size, cfg.hidden_dropout_prob)

    def forward(self, x):
        return self.output(self.attention(x))


class ViTLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_size
        self.layernorm_before = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.attention = ViTAttention(cfg)
        self.layernorm_after = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.intermediate = _Dense(d, cfg.intermediate_size)  # HF ViTIntermediate: no dropout
        self.output = _Dense(cfg.intermediate_size, d, cfg.hidden_dropout_prob)
        self.act = _act(cfg.hidden_act)

    def forward(self, x):
        h = x + self.attention(self.layernorm_before(x))
        return h + self.output(self.act(self.intermediate(self.layernorm_after(h))))


class ViTEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(cfg) for _ in range(cfg.num_layers)])

    def forward(self, x):
        for lyr in self.layer:
            x = lyr(x)
        return x


class ViTModel(nn.Module):
    """HF ViTModel(add_pooling_layer=False) / DeiTModel(add_pooling_layer=False)."""

    def __init__(self, cfg):
        super().__init__()
        self.embeddings = ViTEmbeddings(cfg)
        self.encoder = ViTEncoder(cfg)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixel_values):
        return self.layernorm(self.encoder(self.embeddings(pixel_values)))


class ViTForImageClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert not cfg.distillation_token
        self.config = cfg
        self.vit = ViTModel(cfg)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, pixel_values, labels=None):
        seq = self.vit(pixel_values)
        logits = self.classifier(seq[:, 0, :])
        out = {"last_hidden_state": seq, "logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return out


class DeiTForImageClassificationWithTeacher(nn.Module):
    """HF's class has no loss (inference only). For fine-tuning without a teacher, qft's choice is
    loss = CrossEntropy((cls_logits + distillation_logits) / 2, labels)."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg.distillation_token
        self.config = cfg
        self.deit = ViTModel(cfg)
        self.cls_classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)
        self.distillation_classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, pixel_values, labels=None):
        seq = self.deit(pixel_values)
        cls_logits = self.cls_classifier(seq[:, 0, :])
        dist_logits = self.distillation_classifier(seq[:, 1, :])
        logits = (cls_logits + dist_logits) / 2
        out = {"last_hidden_state": seq, "logits": logits, "cls_logits": cls_logits,
               "distillation_logits": dist_logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels.view(-1))
        return out


# --------------------------------------------------------------------------------------------
# BERT


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d)  # HF sets padding_idx=0: affects init only
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        t = input_ids.shape[1]
        position_ids = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class _DenseLN(nn.Module):
    """HF BertSelfOutput / BertOutput: LayerNorm(dropout(dense(h)) + input)."""

    def __init__(self, d_in, d_out, eps, dropout):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.attention_probs_dropout_prob)
        self.output = _DenseLN(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_dropout_prob)

    def forward(self, x, ext_mask):
        return self.output(self.self(x, ext_mask), x)


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = _Dense(cfg.hidden_size, cfg.intermediate_size)
        self.output = _DenseLN(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_dropout_prob)
        self.act = _act(cfg.hidden_act)

    def forward(self, x, ext_mask):
        a = self.attention(x, ext_mask)
        return self.output(self.act(self.intermediate(a)), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_layers)])

    def forward(self, x, ext_mask):
        for lyr in self.layer:
            x = lyr(x, ext_mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


def extended_attention_mask(attention_mask, dtype):
    """HF get_extended_attention_mask for an encoder: [B, T] {0,1} -> [B, 1, 1, T] additive."""
    m = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - m) * torch.finfo(dtype).min


class BertModel(nn.Module):
    def __init__(self, cfg, add_pooling_layer=True):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        ext = extended_attention_mask(attention_mask, x.dtype)
        seq = self.encoder(x, ext)
        pooled = self.pooler(seq) if self.pooler is not None else None
        return seq, pooled


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        seq, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(pooled))
        out = {"last_hidden_state": seq, "pooler_output": pooled, "logits": logits}
        if labels is not None:
            if self.config.num_labels == 1:  # HF problem_type "regression"
                out["loss"] = F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
            else:  # "single_label_classification"
                out["loss"] = F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return out


# --------------------------------------------------------------------------------------------
# helpers


def build(kind, **cfg):
    """build("vit"|"deit"|"bert", **config fields) -> model (float32, on CPU)."""
    if kind == "vit":
        return ViTForImageClassification(ViTConfig(**cfg))
    if kind == "deit":
        return DeiTForImageClassificationWithTeacher(ViTConfig(distillation_token=True, **cfg))
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**cfg))
    raise ValueError(kind)


def load_state(module, tensors, prefix="", strict=True, ignore=("embeddings.position_ids",)):
    """Copy numpy arrays / tensors named like an HF checkpoint into `module` (dtype converted).
    `prefix` is prepended to the checkpoint names (e.g. MiniLM has no "bert." prefix: load into
    model.bert with prefix "", or into the full model with prefix "bert.")."""
    own = dict(module.named_parameters())
    seen = set()
    with torch.no_grad():
        for name, arr in tensors.items():
            if name in ignore:
                continue
            key = prefix + name
            if key not in own:
                if strict:
                    raise KeyError(f"unexpected checkpoint tensor {name}")
                continue
            p = own[key]
            src = torch.as_tensor(arr)
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(f"{key}: shape {tuple(src.shape)} != {tuple(p.shape)}")
            p.copy_(src.to(p.dtype))
            seen.add(key)
    missing = [k for k in own if k not in seen]
    if strict and missing:
        raise KeyError(f"missing parameters: {missing}")
    return missing
