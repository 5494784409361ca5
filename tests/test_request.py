"""GenerateRequest (request.py): one request type for the CLI and the Python API, validated once,
its errors worded in the caller's terms."""

import pytest

from confgf_fast.cli import build_parser
from confgf_fast.config import Runtime, resolve_schedule
from confgf_fast.pipeline.request import GenerateRequest, RequestError


def _cli(*argv: str) -> GenerateRequest:
    return GenerateRequest.from_args(build_parser().parse_args(["generate", "CCO", "-o", "x.sdf", *argv]))


def test_the_same_check_speaks_each_callers_language():
    with pytest.raises(RequestError, match=r"^chunk_size must be >= 1$"):
        GenerateRequest(chunk_size=0)
    with pytest.raises(RequestError, match=r"^--chunk-size must be >= 1$"):
        GenerateRequest(chunk_size=0, vocabulary="cli")
    with pytest.raises(RequestError, match=r"runtime precision='tf32' needs a CUDA device \(on a CPU use 'fp32'"):
        GenerateRequest(runtime=Runtime(precision="tf32"))
    with pytest.raises(RequestError, match=r"^--precision tf32 needs a CUDA device \(on a CPU use fp32 or bf16\)$"):
        _cli("--precision", "tf32")
    with pytest.raises(RequestError, match=r"^prune_rms, energy_window and sort_energy work on energies: "
                                           r"add relax='mmff' or 'xtb'$"):
        GenerateRequest(relax="none", sort_energy=True)
    with pytest.raises(RequestError, match=r"^--prune-rms, --energy-window and --sort-energy work on energies: "
                                           r"add --relax mmff or xtb$"):
        _cli("--relax", "none", "--sort-energy")


def test_cli_flags_become_schedule_overrides():
    r = _cli("--schedule", "fast", "--levels", "7", "--no-stereo", "--compile", "off")
    assert r.schedule == resolve_schedule("fast", overrides={"levels": 7, "stereo": False})
    assert r.schedule.bands is None and r.runtime == Runtime(compile="off") and r.vocabulary == "cli"
    assert _cli("--levels", "3").schedule.sampler == "langevin"  # Langevin options alone ask for Langevin
    with pytest.raises(RequestError, match="--num-steps do not apply to the langevin sampler"):
        _cli("--sampler", "langevin", "--num-steps", "3")
    with pytest.raises(RequestError, match="--init-oversample applies to the ETKDG warm start"):
        _cli("--schedule", "quick", "--init-oversample", "2")
    with pytest.raises(RequestError) as bad:
        _cli("--bands", "2:3")
    assert bad.value.fatal and str(bad.value).startswith("--bands: bad band")


def test_python_keywords_build_the_same_request():
    r = GenerateRequest.from_api(4, schedule="quick", seed=3, chunk_size=5)
    assert (r.num_confs, r.schedule.name, r.seed, r.chunk_size, r.vocabulary) == (4, "quick", 3, 5, "python")
    assert GenerateRequest.from_api().schedule == resolve_schedule()  # the warm start, as the CLI's default
    with pytest.raises(TypeError, match=r"generate\(\) got an unexpected keyword argument 'num_conf'"):
        GenerateRequest.from_api(num_conf=3, caller="generate")
    import confgf_fast as cf

    with pytest.raises(TypeError, match="unexpected keyword argument 'sead'"):
        cf.generate(["CCO"], 1, sead=1)
    with pytest.raises(TypeError, match="not both"):
        cf.generate(["CCO"], 1, request=GenerateRequest(), seed=1)
