"""Options: each flag has an ini twin, the command line wins, bad values name the option."""

from __future__ import annotations

import pytest

CASES = """\
cases:
  - id: owl
    prompt: "an owl"
    clip: {expect: "an owl", distractors: ["a hawk"]}
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--t2i-device=gpu"], "--t2i-device='gpu' is not a device; use auto, cpu, cuda, cuda:N or mps."),
        (["--t2i-dtype=half"], "--t2i-dtype='half' is not a dtype; use one of auto, float16, bfloat16, float32."),
        (["--t2i-resnet-weights=IMAGENET1K_V9"], "--t2i-resnet-weights='IMAGENET1K_V9' is neither a torchvision*"),
        (["--t2i-resnet-weights=missing.safetensors"], "--t2i-resnet-weights='missing.safetensors': no such file*"),
        (["--t2i-model="], "--t2i-model is empty; give a value or leave the option out."),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_bad_ini_value_names_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nt2i_dtype = fp8\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --t2i-dtype (ini option t2i_dtype)='fp8' is not a dtype*"])


@pytest.mark.parametrize(("ini", "flag"), [("t2i_no_cache", "--t2i-no-cache"), ("t2i_refresh", "--t2i-refresh")])
def test_a_bad_boolean_ini_value_names_the_option(pytester: pytest.Pytester, ini: str, flag: str) -> None:
    pytester.makeini(f"[pytest]\n{ini} = maybe\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: {flag} (ini option {ini})='maybe' is not a boolean: use true or false (also accepted: "
            "yes/no, on/off, 1/0), or leave it out."
        ]
    )
    pytester.makeini(f"[pytest]\n{ini} = yes\n")
    assert pytester.runpytest().ret == pytest.ExitCode.NO_TESTS_COLLECTED  # a good value is accepted


def test_cuda_requested_without_cuda(pytester: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest("--t2i-device=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --t2i-device='cuda', but CUDA is not available on this machine*"])
    assert "Traceback" not in result.stderr.str()


def test_command_line_wins_over_ini_and_auto_resolves(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nt2i_dtype = bfloat16\nt2i_device = cpu\n")
    pytester.makepyfile(
        """
        def test_settings(t2i_settings):
            print("SETTINGS", t2i_settings.device, t2i_settings.dtype_name)
        """
    )
    pytester.runpytest("-s").stdout.fnmatch_lines(["*SETTINGS cpu bfloat16"])
    pytester.runpytest("-s", "--t2i-dtype=auto").stdout.fnmatch_lines(["*SETTINGS cpu float32"])


def test_local_model_dirs_resolve_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.mkdir("models").joinpath("sd").mkdir()
    pytester.makeini("[pytest]\nt2i_model = models/sd\n")
    pytester.makepyfile(
        """
        def test_settings(t2i_settings):
            print("MODEL", t2i_settings.model, t2i_settings.clip_model)
        """
    )
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines([f"*MODEL {pytester.path / 'models/sd'} openai/clip-vit-base-patch32"])


def test_help_lists_every_option_with_ini_and_default(pytester: pytest.Pytester) -> None:
    text = " ".join(pytester.runpytest("--help").stdout.str().split())  # unwrap lines
    assert "t2i-harness: text-to-image prompt regression tests:" in text
    for flag, ini, default in [
        ("--t2i-model=ID_OR_DIR", "t2i_model", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ("--t2i-clip-model=ID_OR_DIR", "t2i_clip_model", "openai/clip-vit-base-patch32"),
        ("--t2i-resnet-weights=NAME_OR_FILE", "t2i_resnet_weights", "IMAGENET1K_V2"),
        ("--t2i-device=DEVICE", "t2i_device", "auto"),
        ("--t2i-dtype=DTYPE", "t2i_dtype", "auto"),
        ("--t2i-report-dir=DIR", "t2i_report_dir", "reports"),
    ]:
        section = text[text.index(flag) :]
        assert f"Ini: {ini}. Default: '{default}'" in section[:400], flag


def test_resolved_settings_are_shown_after_collection(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest("--collect-only", "--t2i-device=cpu", "--t2i-batch-size=3", "--t2i-no-cache")
    result.stdout.fnmatch_lines(
        [
            "collected 1 item",
            "t2i: model stable-diffusion-v1-5/stable-diffusion-v1-5, clip openai/clip-vit-base-patch32, "
            "resnet IMAGENET1K_V2",
            f"t2i: device cpu, dtype float32, batch size 3, report dir {pytester.path / 'reports'}, image cache off",
        ]
    )


def test_options_needing_torch_are_checked_when_python_tests_use_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_settings(t2i_settings): pass")
    result = pytester.runpytest("--t2i-resnet-weights=IMAGENET1K_V9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --t2i-resnet-weights='IMAGENET1K_V9' is neither a torchvision*"])


def test_bad_option_under_xdist_is_one_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", suite=CASES)
    result = pytester.runpytest_subprocess("-n", "2", "--t2i-resnet-weights=IMAGENET1K_V9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --t2i-resnet-weights='IMAGENET1K_V9' is neither a torchvision*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
