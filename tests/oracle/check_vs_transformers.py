#!/usr/bin/python3
"""Optional cross-check: the committed goldens against Hugging Face `transformers` itself.

Not needed to regenerate anything (the oracle never imports transformers); it confirms that the
plain-torch models in models.py reproduce HF's math. It rebuilds each golden model with the real
HF class, loads the golden's weights, runs it in float64, and compares logits, loss and every
gradient with the golden (max|a - ref| / max|ref| per tensor). For minilm_hidden it also compares
the token ids with HF's slow Python BertTokenizer (an implementation independent of `tokenizers`)
and last_hidden_state with HF BertModel on the real checkpoint.

transformers is not a dependency of the project; install it somewhere private, e.g.
  /usr/bin/python3 -m pip install --target /tmp/hfcheck --no-deps transformers==4.40.2 \
      tokenizers==0.19.1 huggingface_hub==0.23.0 safetensors==0.4.3 regex
  PYTHONPATH=/tmp/hfcheck /usr/bin/python3 tests/oracle/check_vs_transformers.py
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402

GOLDEN = os.path.normpath(os.path.join(HERE, "..", "golden"))


def rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    den = np.abs(ref).max()
    return np.abs(a - ref).max() / (den if den > 0 else 1.0)


def check_tiny(name):
    import transformers as tf
    t, m = st_io.load(os.path.join(GOLDEN, name + ".safetensors"))
    common = dict(hidden_size=int(m["hidden_size"]), num_hidden_layers=int(m["num_layers"]),
                  num_attention_heads=int(m["num_heads"]), intermediate_size=int(m["intermediate_size"]),
                  layer_norm_eps=float(m["layer_norm_eps"]), hidden_act=m["hidden_act"],
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  num_labels=int(m["num_labels"]), attn_implementation="eager")
    mt = m["model_type"]
    if mt in ("vit", "deit"):
        vis = dict(image_size=int(m["image_size"]), patch_size=int(m["patch_size"]),
                   num_channels=int(m["num_channels"]))
        if mt == "vit":
            model = tf.ViTForImageClassification(tf.ViTConfig(**common, **vis))
        else:
            model = tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(**common, **vis))
    else:
        model = tf.BertForSequenceClassification(tf.BertConfig(
            **common, vocab_size=int(m["vocab_size"]),
            max_position_embeddings=int(m["max_position_embeddings"]),
            type_vocab_size=int(m["type_vocab_size"])))
    model = model.double().eval()
    params = dict(model.named_parameters())
    golden_params = [k for k in t if k in params]
    extra = set(params) - set(golden_params)
    assert not extra, f"HF has parameters the golden lacks: {sorted(extra)}"
    with torch.no_grad():
        for k in golden_params:
            params[k].copy_(torch.from_numpy(t[k]).double())
    if mt in ("vit", "deit"):
        out = model(pixel_values=torch.from_numpy(t["pixel_values"]).double())
        logits = out.logits
        loss = F.cross_entropy(logits, torch.from_numpy(t["labels"]))  # HF DeiT-with-teacher has no loss
        if mt == "vit":
            hf_loss = model(pixel_values=torch.from_numpy(t["pixel_values"]).double(),
                            labels=torch.from_numpy(t["labels"])).loss
            assert abs(hf_loss.item() - loss.item()) < 1e-12
    else:
        labels = torch.from_numpy(t["labels"])
        if labels.is_floating_point():
            labels = labels.double()
        out = model(input_ids=torch.from_numpy(t["input_ids"]),
                    attention_mask=torch.from_numpy(t["attention_mask"]),
                    token_type_ids=torch.from_numpy(t["token_type_ids"]), labels=labels)
        logits, loss = out.logits, out.loss
    loss.backward()
    errs = {"logits": rel(logits.detach().numpy(), t["logits"]), "loss": rel([loss.item()], t["loss"])}
    worst_g, worst_name = 0.0, ""
    for k in golden_params:
        g = params[k].grad.numpy()
        ref = t["grad." + k]
        e = rel(g, ref) if np.abs(ref).max() > 0 else np.abs(g).max() / np.abs(t["grad." + k.replace(
            "key.bias", "key.weight")]).max()
        if e > worst_g:
            worst_g, worst_name = e, k
    print(f"{name}: vs transformers {tf.__version__}: logits {errs['logits']:.2e}, loss {errs['loss']:.2e}, "
          f"worst grad {worst_g:.2e} ({worst_name})")
    ok = errs["logits"] < 1e-6 and errs["loss"] < 1e-6 and worst_g < 1e-5
    return ok


def check_minilm():
    import transformers as tf
    path = os.path.join(GOLDEN, "minilm_hidden.safetensors")
    if not os.path.exists(path):
        print("minilm_hidden: no golden, skipped")
        return True
    t, m = st_io.load(path)
    d = subprocess.check_output(["bash", os.path.join(HERE, "..", "..", "datasets", "fetch_minilm.sh")],
                                text=True).strip().splitlines()[-1]
    sentences = json.loads(m["sentences"])
    tok = tf.BertTokenizer(os.path.join(d, "vocab.txt"), do_lower_case=True)  # slow, pure Python
    enc = tok(sentences, padding=True, return_tensors="np")
    ok_ids = (np.array_equal(enc["input_ids"], t["input_ids"])
              and np.array_equal(enc["attention_mask"], t["attention_mask"])
              and np.array_equal(enc["token_type_ids"], t["token_type_ids"]))
    model = tf.BertModel.from_pretrained(d, attn_implementation="eager").double().eval()
    with torch.no_grad():
        h = model(input_ids=torch.from_numpy(t["input_ids"]),
                  attention_mask=torch.from_numpy(t["attention_mask"]),
                  token_type_ids=torch.from_numpy(t["token_type_ids"])).last_hidden_state.numpy()
    mask = t["attention_mask"].astype(bool)
    e = rel(h[mask], t["last_hidden_state"][mask])
    e_all = rel(h, t["last_hidden_state"])
    print(f"minilm_hidden: token ids == HF BertTokenizer (slow): {ok_ids}; last_hidden_state vs HF "
          f"BertModel fp64: {e:.2e} (real tokens), {e_all:.2e} (all positions)")
    return ok_ids and e < 1e-6


def main():
    ok = True
    for name in ("vit_tiny", "deit_tiny", "bert_tiny", "bert_tiny_regression"):
        ok &= check_tiny(name)
    ok &= check_minilm()
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
