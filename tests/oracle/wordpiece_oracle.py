#!/usr/bin/env python3
"""Writes tests/golden/wordpiece_cases.bin: sentences and their token ids from Hugging Face tokenizers.

Run with /usr/bin/python3 (needs the `tokenizers` package) after `bash datasets/fetch_minilm.sh`:
    /usr/bin/python3 tests/oracle/wordpiece_oracle.py [MINILM_DIR]
The file is a gzip'ed TSV, one case per line:
    S <max_length> <text> - <ids>                  single sentence (max_length 0: no truncation)
    P <max_length> <text_a> <text_b> <ids> <type_ids>
Texts are raw UTF-8 bytes except that bytes < 0x20, 0x7F, backslash and invalid UTF-8 bytes are
written as \\xHH. Sentences come deterministically from this machine's Debian package descriptions
and man pages, plus hand-made hard cases and random strings. The ids are also checked against a
pure-Python copy of transformers' BasicTokenizer + WordpieceTokenizer (differences are printed).
"""
import glob
import gzip
import hashlib
import os
import random
import re
import subprocess
import sys
import unicodedata

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "wordpiece_cases.bin")


def escape(data: bytes) -> str:
    text = data.decode("utf-8", errors="surrogateescape")
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02X" % (o - 0xDC00))
        elif o < 0x20 or o == 0x7F or ch == "\\":
            out.append("\\x%02X" % o)
        else:
            out.append(ch)
    return "".join(out)


def stable_key(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", errors="surrogateescape")).hexdigest()


def debian_sentences():
    text = open("/var/lib/dpkg/status", encoding="utf-8", errors="replace").read()
    sentences = set()
    for block in re.findall(r"^Description: (.*(?:\n .*)*)", text, re.M):
        lines = [l[1:] if l.startswith(" ") else l for l in block.split("\n")]
        body = " ".join("" if l.strip() == "." else l.strip() for l in lines)
        for s in re.split(r"(?<=[.!?])\s+", body):
            s = s.strip()
            if 3 <= len(s) <= 400:
                sentences.add(s)
    return sorted(sentences, key=stable_key)


def man_lines():
    lines = set()
    for path in sorted(glob.glob("/usr/share/man/man1/*.1.gz"))[:400]:
        try:
            raw = subprocess.run(["zcat", path], capture_output=True, timeout=10).stdout
        except Exception:
            continue
        for line in raw.decode("utf-8", errors="replace").split("\n"):
            line = line.strip()
            if line.startswith((".", "'")) or len(line) < 20 or len(line) > 300:
                continue
            lines.add(line)
    return sorted(lines, key=stable_key)


HARD = [
    "", " ", "\t\n\r ", "café", "Café au lait", "Ångström", "naïve résumé façade", "ÀÉÎÕÜ àéîõü ñ Ñ ç",
    "Straße ẞ", "İstanbul ıi", "ΣΑΣ σας", "Ǆemal ǅ ǆ", "ﬁne ﬂow", "Ⅻ ⓐ ①", "東京は日本の首都です。", "我爱北京天安门",
    "中文English混合", "한국어 텍스트", "日本語のテキスト、カタカナ", "emoji 😀🎉👍🏽 🥰 🫠 ok", "👨‍👩‍👧", "a\u200bb\u200dc",
    "soft\u00adhyphen", "nbsp\u00a0here", "line\u2028sep\u2029par", "ideographic\u3000space", "bell\x07tab\tnl\n",
    "null\x00byte", "del\x7fchar", "\x1b[31mred\x1b[0m", "\u0085nel", "a\ufffdb", "private\ue000use", "unassigned\u0378x",
    "...", "!!!???", "--==++", "()[]{}<>", "@#$%^&*", "\u00bf\u00a1\u00ab\u00bb\u201c\u201d\u2014\u2013\u2026", "a.b,c;d:e",
    "[CLS] [SEP] [PAD] [MASK] [UNK]", "a[CLS]b[sep]c", "[[CLS]]", "x" * 100, "x" * 101, "ab" * 60,
    "supercalifragilisticexpialidocious", "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Hello, World!", "HELLO world", "don't can't won't", "e-mail foo@bar.com http://example.org/a?b=c",
    "3.14159 1,000,000 $5 50%", "C++ C# F# .NET", "x̃ỹ z̧", "e\u0301 vs \u00e9", "\u0f39a\u0f39", "Ωmega µ ℃ ℉ ™",
    "arabic مرحبا hebrew שלום", "thai สวัสดี", "hindi नमस्ते", "russian Привет мир", "greek Γειά σου Κόσμε",
    "tab\tseparated\tvalues", "  leading and trailing  ", "multiple     spaces", "ﾊﾝｶｸ ｶﾀｶﾅ", "ｆｕｌｌｗｉｄｔｈ",
    "𝐛𝐨𝐥𝐝 𝕕𝕠𝕦𝕓𝕝𝕖", "𠀋𡈽𡌛", "\U0002a700\U0002b740", "\uf900\ufa0e", "Å Ω K", "ÿ Ÿ", "\u1e9b\u0323",
]
HARD_BYTES = [
    b"caf\xc3", b"\xff\xfe invalid", b"abc\x80def", b"\xe2\x82A", b"\xed\xa0\x80surrogate", b"\xc0\xafoverlong",
    b"\xf4\x90\x80\x80big", b"\xf0\x28\x8c\x28", b"mixed \xe2\x82\xac euro \xe2\x82", b"\xc3\xa9\xc3", b"\xf0\x9f\x98",
    b"ok\xa0ok", b"\xe0\x80\x80x", b"\xef\xbf\xbdreplacement",
]


def code_point_sweep():
    """Every code point below U+3000 and every 13th above, up to U+30000, each as "a<c>b"."""
    cps = [cp for cp in range(0x3000) if not 0xD800 <= cp <= 0xDFFF]
    cps += list(range(0x3000, 0x30000, 13))
    cps = [cp for cp in cps if not 0xD800 <= cp <= 0xDFFF]
    return [" ".join("a" + chr(cp) + "b" for cp in cps[i:i + 32]) for i in range(0, len(cps), 32)]


def random_strings(count):
    rng = random.Random(1234)
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
             (0x900, 0x97F), (0xE00, 0xE7F), (0x2000, 0x206F), (0x2100, 0x21FF), (0x3000, 0x30FF),
             (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xFF00, 0xFFEF), (0x1F300, 0x1F64F), (0x0, 0x1F)]
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        chars = []
        for _ in range(n):
            lo, hi = rng.choice(pools)
            cp = rng.randint(lo, hi)
            if rng.random() < 0.15:
                cp = 0x20
            chars.append(chr(cp))
        out.append("".join(chars))
    return out


# ---- pure-Python copy of transformers' BertTokenizer (BasicTokenizer + WordpieceTokenizer) ----

def _is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def python_bert_ids(text, vocab, specials):
    parts = re.split("(" + "|".join(re.escape(s) for s in specials) + ")", text)
    ids = []
    for part in parts:
        if part in specials:
            ids.append(vocab[part])
            continue
        clean = "".join(" " if _is_whitespace(c) else c for c in part
                        if not (ord(c) in (0, 0xFFFD) or _is_control(c)))
        clean = "".join(" %s " % c if _is_chinese(ord(c)) else c for c in clean)
        for token in clean.strip().split():
            token = token.lower()
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
            words, cur = [], []
            for c in token:
                if _is_punctuation(c):
                    if cur:
                        words.append("".join(cur))
                    words.append(c)
                    cur = []
                else:
                    cur.append(c)
            if cur:
                words.append("".join(cur))
            for word in words:
                if len(word) > 100:
                    ids.append(vocab["[UNK]"])
                    continue
                pieces, start, bad = [], 0, False
                while start < len(word):
                    end, found = len(word), None
                    while start < end:
                        sub = ("##" if start > 0 else "") + word[start:end]
                        if sub in vocab:
                            found = sub
                            break
                        end -= 1
                    if found is None:
                        bad = True
                        break
                    pieces.append(vocab[found])
                    start = end
                ids.extend([vocab["[UNK]"]] if bad else pieces)
    return ids


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else subprocess.run(
        ["bash", os.path.join(ROOT, "datasets", "fetch_minilm.sh")], capture_output=True, text=True,
        check=True).stdout.strip()
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    vocab = {}
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    debian = debian_sentences()
    man = man_lines()
    singles = [s.encode() for s in debian[:2500]] + [s.encode() for s in man[:800]]
    singles += [s.encode("utf-8", errors="surrogatepass") for s in HARD] + HARD_BYTES
    singles += [s.encode("utf-8", errors="surrogatepass") for s in random_strings(400)]
    sweep_start = len(singles)
    singles += [s.encode("utf-8") for s in code_point_sweep()]
    pool = debian[2500:] + man[800:]
    pairs = [(pool[2 * i].encode(), pool[2 * i + 1].encode(), 32 if i % 2 == 0 else 64)
             for i in range(min(300, len(pool) // 2))]
    pairs += [(HARD[i].encode(), HARD[-1 - i].encode(), 32) for i in range(20)]

    # The slow Python BertTokenizer uses Python's newer Unicode data (Unicode 14 here), so it differs
    # from tokenizers on characters added since; those diffs are counted, real sentences are shown.
    lines, python_diffs, real_diffs = [], 0, 0
    tok.no_truncation()
    for index, data in enumerate(singles):
        text = data.decode("utf-8", errors="replace")
        ids = tok.encode(text).ids
        py = [vocab["[CLS]"]] + python_bert_ids(text, vocab, specials) + [vocab["[SEP]"]]
        if py != ids:
            python_diffs += 1
            if index < sweep_start - 400:
                real_diffs += 1
                print("python BertTokenizer differs:", repr(text), file=sys.stderr)
        lines.append("S\t0\t%s\t-\t%s" % (escape(data), " ".join(map(str, ids))))
    # Single sentences truncated too (the first 200 long ones, max_length 16).
    tok.enable_truncation(16, strategy="longest_first")
    for data in singles[:200]:
        ids = tok.encode(data.decode("utf-8", errors="replace")).ids
        lines.append("S\t16\t%s\t-\t%s" % (escape(data), " ".join(map(str, ids))))
    for a, b, max_length in pairs:
        tok.enable_truncation(max_length, strategy="longest_first")
        enc = tok.encode(a.decode("utf-8", errors="replace"), b.decode("utf-8", errors="replace"))
        lines.append("P\t%d\t%s\t%s\t%s\t%s" % (max_length, escape(a), escape(b), " ".join(map(str, enc.ids)),
                                                 " ".join(map(str, enc.type_ids))))
    with open(OUT, "wb") as f:
        f.write(gzip.compress(("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"), 9, mtime=0))
    print("%s: %d cases (%d singles, %d pairs), %d bytes; python BertTokenizer differs on %d (%d of them "
          "sentences or hand-made cases, the rest random strings and the code point sweep)"
          % (OUT, len(lines), len(singles), len(pairs), os.path.getsize(OUT), python_diffs, real_diffs))


if __name__ == "__main__":
    main()
