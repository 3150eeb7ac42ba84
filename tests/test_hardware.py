"""CPU precision defaults follow the CPU's bf16 support, read from real /proc/cpuinfo text."""

from __future__ import annotations

from hydra import compose, initialize_config_dir

from qwenft.config import conf_dir
from qwenft.hardware import cpu_flags, cpu_precision, native_bf16

# Abridged from two real /proc/cpuinfo files: a Sapphire Rapids Xeon (AMX) and an Ice Lake Xeon (none).
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
ICE_LAKE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_vbmi2\nbugs\t\t: spectre_v1\n\n"


def test_flags_parsed_from_cpuinfo():
    assert {"avx512_vnni", "avx512f"} <= cpu_flags(ICE_LAKE) and "spectre_v1" not in cpu_flags(ICE_LAKE)
    assert cpu_flags("") == set()


def test_bf16_only_where_the_cpu_multiplies_it_natively():
    assert native_bf16(SAPPHIRE) and cpu_precision(SAPPHIRE) == "bf16-mixed"
    assert not native_bf16(ICE_LAKE) and cpu_precision(ICE_LAKE) == "32-true"
    assert cpu_precision("flags : avx512_bf16") == "bf16-mixed"


def test_configs_resolve_to_this_machines_precision():
    expected = cpu_precision()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        assert compose("train").trainer.precision == expected
        assert compose("train", overrides=["trainer=gpu"]).trainer.precision == "bf16-mixed"
        assert compose("evaluate").generation.bf16 is native_bf16()
        assert compose("answer", overrides=["prompt_file=x"]).generation.bf16 is native_bf16()
