"""Bad command lines a new user could type end in one line ``error: ...`` naming the option or
file, exit code 2 and no traceback: fit, validate, test, predict and every tool.

Each case is ``(id, argv, expected)``: ``argv`` and ``expected`` are formatted with the paths
of the module's fixture files (``{run}``, ``{ckpt}``, ``{tmp}`` ...), and every string of
``expected`` must appear in the error line. The cases run in-process through
:func:`visrep.cli.main`; a few run through the ``visrep`` console script as well.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visrep.cli import main

FAST = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]  # fmt: skip
TINY = ["--model.backbone", "mlp", "--model.backbone.width", "8"]
IDX = ["--data", "visrep.data.IDXDataModule"]
FOLDER = ["--data", "visrep.data.ImageFolderDataModule"]
NPZ = ["--data", "visrep.data.NpzDataModule"]

# (id, argv, strings the error line must contain)
Case = tuple[str, list[str], tuple[str, ...]]

# fmt: off
FIT: list[Case] = [
    ("max_epochs_negative", ["fit", "--trainer.max_epochs", "-5"], ("max_epochs", "-5")),
    ("max_epochs_zero", ["fit", *TINY, "--trainer.max_epochs", "0"], ("max_epochs",)),
    ("max_epochs_word", ["fit", "--trainer.max_epochs", "ten"], ("max_epochs", "ten")),
    ("max_epochs_float", ["fit", "--trainer.max_epochs", "1.5"], ("max_epochs",)),
    ("max_steps_word", ["fit", "--trainer.max_steps", "many"], ("max_steps",)),
    ("devices_zero", ["fit", "--trainer.devices", "0"], ("devices",)),
    ("devices_negative", ["fit", "--trainer.devices", "-2"], ("devices",)),
    ("accelerator_unknown", ["fit", "--trainer.accelerator", "tpux"], ("accelerator", "tpux")),
    ("precision_unknown", ["fit", "--trainer.precision", "7"], ("precision",)),
    ("limit_batches_negative", ["fit", "--trainer.limit_train_batches", "-1"],
     ("limit_train_batches",)),
    ("gradient_clip_negative", ["fit", *TINY, *FAST, "--trainer.gradient_clip_val", "-1"],
     ("gradient_clip_val",)),
    ("trainer_option_unknown", ["fit", "--trainer.max_epoks", "3"], ("max_epoks",)),
    ("callback_unknown", ["fit", "--trainer.callbacks+=NoSuchCallback"], ("NoSuchCallback",)),
    ("option_unknown", ["fit", "--bogus", "1"], ("bogus",)),
    ("model_option_unknown", ["fit", "--model.bogus", "1"], ("bogus",)),
    ("model_class_unknown", ["fit", "--model", "visrep.tasks.NoSuchTask"], ("NoSuchTask",)),
    ("data_class_unknown", ["fit", "--data", "visrep.data.NoSuchData"], ("NoSuchData",)),
    ("backbone_unknown", ["fit", "--model.backbone", "resnt18"], ("resnt18",)),
    ("backbone_empty", ["fit", "--model.backbone", ""], ("backbone",)),
    ("backbone_timm_name", ["fit", "--model.backbone", "convnext_atto"], ("convnext_atto",)),
    ("backbone_option_typo", ["fit", "--model.backbone", "mlp", "--model.backbone.widht", "8"],
     ("widht",)),
    ("backbone_width_word", ["fit", "--model.backbone", "mlp", "--model.backbone.width", "big"],
     ("width",)),
    ("backbone_width_zero", ["fit", *FAST, "--model.backbone", "mlp", "--model.backbone.width",
                             "0"],
     ("width",)),
    ("backbone_width_negative", ["fit", *FAST, "--model.backbone", "mlp",
                                 "--model.backbone.width", "-3"],
     ("width",)),
    ("backbone_depth_negative", ["fit", *FAST, *TINY, "--model.backbone.depth", "-1"], ("depth",)),
    ("backbone_activation", ["fit", *FAST, *TINY, "--model.backbone.activation", "swishy"],
     ("activation", "swishy")),
    ("backbone_dropout_big", ["fit", *FAST, *TINY, "--model.backbone.dropout", "1.5"],
     ("dropout",)),
    ("channels_bad_member_brackets", ["fit", "--model.backbone.channels", "[8,x]"], ("channels",)),
    ("channels_bad_member_commas", ["fit", "--model.backbone.channels", "8,x"], ("channels",)),
    ("channels_negative", ["fit", *FAST, "--model.backbone.channels", "[8,-1]"], ("channels",)),
    ("pool_unknown", ["fit", "--model.backbone.pool", "median"], ("pool", "median")),
    ("naisnet_channels_bad", ["fit", "--model.backbone", "naisnet", "--model.backbone.channels",
                              "16,abc"],
     ("channels",)),
    ("lr_word", ["fit", "--model.optim.lr", "fast"], ("lr", "fast")),
    ("lr_negative", ["fit", *FAST, *TINY, "--model.optim.lr", "-1"], ("lr",)),
    ("optimizer_unknown", ["fit", *FAST, *TINY, "--model.optim.optimizer", "adamx"],
     ("optimizer", "adamx")),
    ("schedule_unknown", ["fit", *FAST, *TINY, "--model.optim.schedule", "linear"],
     ("schedule", "linear")),
    ("momentum_negative", ["fit", *FAST, *TINY, "--model.optim.momentum", "-0.5"], ("momentum",)),
    ("weight_decay_negative", ["fit", *TINY, "--model.optim.weight_decay", "-1"],
     ("--model.optim.weight_decay",)),
    ("warmup_negative", ["fit", *TINY, "--model.optim.warmup_epochs", "-2"],
     ("--model.optim.warmup_epochs",)),
    ("gamma_negative", ["fit", *TINY, "--model.optim.gamma", "-0.1"], ("--model.optim.gamma",)),
    ("betas_big", ["fit", *TINY, "--model.optim.betas", "[2,0.9]"], ("--model.optim.betas",)),
    ("accumulate_zero", ["fit", *TINY, "--trainer.accumulate_grad_batches", "0"],
     ("--trainer.accumulate_grad_batches",)),
    ("val_every_zero", ["fit", *TINY, "--trainer.check_val_every_n_epoch", "0"],
     ("--trainer.check_val_every_n_epoch",)),
    ("label_smoothing_big", ["fit", "--model.label_smoothing", "1.5"], ("label_smoothing",)),
    ("top_k_negative", ["fit", *FAST, *TINY, "--model.top_k", "-1"], ("top_k",)),
    ("adversarial_method", ["fit", *FAST, *TINY, "--model.adversarial.method", "magic"],
     ("method",)),
    ("adversarial_eps_negative", ["fit", *FAST, *TINY, "--model.adversarial.eps", "-1"], ("eps",)),
    ("seed_word", ["fit", "--seed_everything", "lucky"], ("seed_everything",)),
    ("test_after_fit_word", ["fit", "--test_after_fit", "maybe"], ("test_after_fit",)),
    ("resume_without_run_dir", ["fit", "--resume"], ("--resume", "--run_dir")),
    ("resume_nothing", ["fit", "--resume", "--run_dir", "{tmp}/fresh"], ("last.ckpt",)),
    ("run_dir_existing_run", ["fit", "--run_dir", "{run}"], ("{run}", "--resume")),
    ("run_dir_is_a_file", ["fit", *FAST, *TINY, "--run_dir", "{text}"], ("{text}",)),
    ("fit_ckpt_missing", ["fit", "--ckpt_path", "{tmp}/missing.ckpt"], ("missing.ckpt",)),
    ("idx_root_missing", ["fit", *FAST, *IDX, "--data.root", "{tmp}/nowhere"], ("nowhere",)),
    ("idx_root_empty", ["fit", *FAST, *IDX, "--data.root", "{empty_dir}"], ("{empty_dir}",)),
    ("idx_root_a_file", ["fit", *FAST, *IDX, "--data.root", "{text}"], ("{text}",)),
    ("idx_root_absent", ["fit", *FAST, *IDX], ("root",)),
    ("folder_root_missing", ["fit", *FAST, *FOLDER, "--data.root", "{tmp}/nowhere"], ("nowhere",)),
    ("folder_root_empty", ["fit", *FAST, *FOLDER, "--data.root", "{empty_dir}"], ("{empty_dir}",)),
    ("folder_root_a_file", ["fit", *FAST, *FOLDER, "--data.root", "{text}"], ("{text}",)),
    ("npz_missing", ["fit", *FAST, *NPZ, "--data.train_path", "{tmp}/none.npz"], ("none.npz",)),
    ("npz_a_directory", ["fit", *FAST, *NPZ, "--data.train_path", "{empty_dir}"], ("{empty_dir}",)),
    ("npz_empty_file", ["fit", *FAST, *NPZ, "--data.train_path", "{empty_file}"],
     ("{empty_file}",)),
    ("mnist_root_missing", ["fit", *FAST, "--config", "mnist", "--data.root", "{tmp}/nowhere"],
     ("nowhere",)),
    ("nmnist_root_missing", ["fit", *FAST, "--config", "nmnist_count", "--data.root",
                             "{tmp}/nowhere"],
     ("nowhere",)),
    ("config_unknown_name", ["fit", "--config", "quikstart"], ("quikstart",)),
    ("config_a_directory", ["fit", "--config", "{empty_dir}"], ("{empty_dir}",)),
    ("config_invalid_yaml", ["fit", "--config", "{bad_yaml}"], ("{bad_yaml}", "line")),
    ("config_empty", ["fit", "--config", "{empty_yaml}"], ("{empty_yaml}", "empty")),
    ("config_a_list", ["fit", "--config", "{list_yaml}"], ("{list_yaml}", "mapping")),
    ("config_a_scalar", ["fit", "--config", "{scalar_yaml}"], ("{scalar_yaml}", "mapping")),
    ("config_binary", ["fit", "--config", "{binary_yaml}"], ("{binary_yaml}",)),
    ("config_unknown_key", ["fit", "--config", "{unknown_key_yaml}"], ("max_epoch",)),
    # a prefix of an option is a typo, not an abbreviation
    ("option_prefix", ["fit", "--trainer.max_epoch", "1"], ("--trainer.max_epoch",)),
    ("config_unknown_section", ["fit", "--config", "{unknown_section_yaml}"], ("optimiser",)),
    ("config_equals_missing", ["fit", "--config={tmp}/nope.yaml"], ("nope.yaml",)),
]

EVALUATE: list[Case] = [
    ("test_ckpt_missing", ["test", "--ckpt_path", "{tmp}/missing.ckpt"], ("missing.ckpt",)),
    ("test_ckpt_empty", ["test", "--ckpt_path", "{empty_file}"], ("{empty_file}", "empty")),
    ("test_ckpt_truncated", ["test", "--ckpt_path", "{truncated}"], ("{truncated}",)),
    ("test_ckpt_random", ["test", "--ckpt_path", "{random}"], ("{random}",)),
    ("test_ckpt_tensor", ["test", "--ckpt_path", "{tensor}"], ("{tensor}",)),
    ("test_ckpt_pickled", ["test", "--ckpt_path", "{pickled}"], ("{pickled}", "pickled")),
    ("test_ckpt_directory", ["test", "--ckpt_path", "{empty_dir}"], ("{empty_dir}",)),
    ("test_ckpt_yaml", ["test", "--ckpt_path", "{list_yaml}"], ("{list_yaml}",)),
    ("test_ckpt_old_format", ["test", "--ckpt_path", "{old_format}"], ("{old_format}",)),
    ("test_ckpt_misfit", ["test", "--ckpt_path", "{misfit_width}"],
     ("{misfit_width}", "net.backbone.body.0.weight", "(8, 64) vs (16, 64)")),
    ("validate_ckpt_random", ["validate", "--ckpt_path", "{random}"], ("{random}",)),
    ("validate_ckpt_missing", ["validate", "--ckpt_path", "{tmp}/gone.ckpt"], ("gone.ckpt",)),
    ("predict_ckpt_misfit_classes", ["predict", "--ckpt_path", "{misfit_classes}", "--data.path",
                                     "{images}"],
     ("{misfit_classes}", "net.backbone.head.fc.weight")),
    ("validate_bad_option", ["validate", "--ckpt_path", "{ckpt}", "--trainer.limit_val_batches",
                             "lots"],
     ("limit_val_batches",)),
    ("predict_path_missing", ["predict", "--ckpt_path", "{ckpt}", "--data.path", "{tmp}/no_images"],
     ("no_images",)),
    ("predict_path_empty_dir", ["predict", "--ckpt_path", "{ckpt}", "--data.path", "{empty_dir}"],
     ("{empty_dir}",)),
    ("predict_path_not_an_image", ["predict", "--ckpt_path", "{ckpt}", "--data.path", "{text}"],
     ("{text}",)),
    ("predict_corrupt_image", ["predict", "--ckpt_path", "{ckpt}", "--data.path",
                               "{corrupt_images}"],
     ("broken.png",)),
    ("predict_without_ckpt", ["predict", "--data.path", "{images}"], ("ckpt_path",)),
    ("predict_ckpt_random", ["predict", "--ckpt_path", "{random}", "--data.path", "{images}"],
     ("{random}",)),
    ("predict_ckpt_misfit", ["predict", "--ckpt_path", "{misfit_width}", "--data.path", "{images}"],
     ("{misfit_width}", "net.backbone.body.0.weight")),
    ("command_unknown", ["frobnicate"], ("frobnicate",)),
    ("command_typo", ["fitt"], ("fitt", "fit")),
]

TOOLS: list[Case] = [
    ("inspect_no_subcommand", ["inspect"], ("model",)),
    ("inspect_subcommand_typo", ["inspect", "modle"], ("modle",)),
    ("inspect_model_no_source", ["inspect", "model"], ("--backbone",)),
    ("inspect_model_missing", ["inspect", "model", "{tmp}/nothing"], ("nothing",)),
    ("inspect_model_empty_dir", ["inspect", "model", "{empty_dir}"], ("{empty_dir}",)),
    ("inspect_model_random_ckpt", ["inspect", "model", "{random}"], ("{random}",)),
    ("inspect_model_misfit", ["inspect", "model", "{misfit_width}"],
     ("{misfit_width}", "net.backbone.body.0.weight")),
    ("inspect_model_which", ["inspect", "model", "{run}", "--which", "middle"],
     ("--which", "middle")),
    ("inspect_model_backbone_unknown", ["inspect", "model", "--backbone", "resnt18"], ("resnt18",)),
    ("inspect_model_input_size_zero", ["inspect", "model", "--backbone", "mlp", "--input_size",
                                       "1", "0", "8"],
     ("--input_size",)),
    ("inspect_model_input_size_short", ["inspect", "model", "--backbone", "mlp", "--input_size",
                                        "1,8"],
     ("--input_size",)),
    ("inspect_model_batch_zero", ["inspect", "model", "--backbone", "mlp", "--batch_size", "0"],
     ("--batch_size",)),
    ("inspect_model_batch_word", ["inspect", "model", "--backbone", "mlp", "--batch_size", "two"],
     ("--batch_size", "two")),
    ("inspect_model_classes_negative", ["inspect", "model", "--backbone", "mlp", "--num_classes",
                                        "-1"],
     ("num_classes",)),
    ("inspect_model_in_chans_negative", ["inspect", "model", "--backbone", "mlp", "--in_chans",
                                         "-1"],
     ("in_chans",)),
    ("inspect_model_backbone_args_typo", ["inspect", "model", "--backbone", "mlp",
                                          "--backbone_args", '{{"widht": 3}}'],
     ("widht",)),
    ("inspect_model_backbone_args_not_json", ["inspect", "model", "--backbone", "mlp",
                                              "--backbone_args", "width=3"],
     ("--backbone_args",)),
    ("inspect_model_config_unknown", ["inspect", "model", "--config", "quikstart"], ("quikstart",)),
    ("inspect_model_config_invalid", ["inspect", "model", "--config", "{bad_yaml}"],
     ("{bad_yaml}",)),
    ("inspect_model_csv_a_directory", ["inspect", "model", "--backbone", "mlp", "--csv",
                                       "{empty_dir}"],
     ("{empty_dir}",)),
    ("stability_not_naisnet", ["inspect", "stability", "{run}"], ("NAIS-Net",)),
    ("stability_missing", ["inspect", "stability", "{tmp}/nothing"], ("nothing",)),
    ("stability_samples_zero", ["inspect", "stability", "{run}", "--num_samples", "0"],
     ("--num_samples",)),
    ("stability_noise_bad_member", ["inspect", "stability", "{run}", "--noise_levels", "0.1,x"],
     ("--noise_levels",)),
    ("stability_tol_sweep_bad_member", ["inspect", "stability", "{run}", "--tol_sweep",
                                        "[0.1,abc]"],
     ("--tol_sweep",)),
    ("compare_no_runs", ["inspect", "compare"], ("runs",)),
    ("compare_missing", ["inspect", "compare", "{tmp}/nothing"], ("nothing",)),
    ("compare_sigmas_bad_member", ["inspect", "compare", "{run}", "--sigmas", "0.1,abc"],
     ("--sigmas",)),
    ("compare_sigmas_negative", ["inspect", "compare", "{run}", "--sigmas", "[-0.1]"],
     ("--sigmas",)),
    ("compare_out_a_file", ["inspect", "compare", "{run}", "--out", "{text}"], ("{text}",)),
    ("explain_missing", ["explain", "{tmp}/nothing"], ("nothing",)),
    ("explain_not_a_run", ["explain", "{empty_dir}"], ("{empty_dir}",)),
    ("explain_methods_commas", ["explain", "{run}", "--methods", "gradcam,foo"],
     ("--methods", "foo")),
    ("explain_methods_brackets", ["explain", "{run}", "--methods", "[gradcam,bar]"],
     ("--methods", "bar")),
    ("explain_methods_empty", ["explain", "{run}", "--methods", "[]"], ("--methods",)),
    ("explain_num_images_zero", ["explain", "{run}", "--num_images", "0"], ("--num_images",)),
    ("explain_split_unknown", ["explain", "{run}", "--split", "dev"], ("--split", "dev")),
    ("explain_device_unknown", ["explain", "{run}", "--device", "tpu"], ("--device", "tpu")),
    ("explain_max_points_small", ["explain", "{run}", "--max_points", "2"], ("--max_points",)),
    ("explain_window_zero", ["explain", "{run}", "--methods", "occlusion", "--window", "0"],
     ("--window",)),
    ("explain_stride_negative", ["explain", "{run}", "--methods", "occlusion", "--stride", "-1"],
     ("--stride",)),
    ("explain_layer_unknown", ["explain", "{run}", "--methods", "gradcam", "--num_images", "2",
                               "--layer", "nosuchlayer"],
     ("nosuchlayer",)),
    ("explain_metric_unknown", ["explain", "{run}", "--metric", "manhattan"],
     ("--metric", "manhattan")),
    ("explain_config_list", ["explain", "{run}", "--config", "{list_yaml}"], ("{list_yaml}",)),
    ("attack_missing", ["attack", "{tmp}/nothing"], ("nothing",)),
    ("attack_eps_bad_member_commas", ["attack", "{run}", "--eps", "0.1,x"], ("--eps",)),
    ("attack_eps_bad_member_brackets", ["attack", "{run}", "--eps", "[0.1,x]"], ("--eps",)),
    ("attack_eps_negative", ["attack", "{run}", "--eps", "[-0.1]"], ("--eps",)),
    ("attack_eps_infinite", ["attack", "{run}", "--eps", "0.1,inf"], ("--eps",)),
    ("attack_eps_empty", ["attack", "{run}", "--eps", "[]"], ("--eps",)),
    ("attack_attacks_commas", ["attack", "{run}", "--attacks", "fgsm,foo"], ("--attacks",)),
    ("attack_attacks_brackets", ["attack", "{run}", "--attacks", "[pgd,bar]"], ("--attacks",)),
    ("attack_norm_unknown", ["attack", "{run}", "--norm", "l3"], ("--norm", "l3")),
    ("attack_steps_zero", ["attack", "{run}", "--steps", "0"], ("--steps",)),
    ("attack_samples_negative", ["attack", "{run}", "--max_samples", "-4"], ("--max_samples",)),
    ("attack_step_size_negative", ["attack", "{run}", "--step_size", "-0.1"], ("--step_size",)),
    ("attack_compare_missing", ["attack", "{run}", "--compare", "{tmp}/other"], ("other",)),
    ("attack_compare_not_attacked", ["attack", "{run}", "--compare", "{empty_dir}"],
     ("{empty_dir}",)),
    ("attack_device_missing", ["attack", "{run}", "--device", "cuda:7"], ("--device",)),
    ("events_no_subcommand", ["events"], ("info",)),
    ("events_info_missing", ["events", "info", "{tmp}/none.npz"], ("none.npz",)),
    ("events_info_empty", ["events", "info", "{empty_file}"], ("{empty_file}",)),
    ("events_info_random", ["events", "info", "{random_npz}"], ("{random_npz}",)),
    ("events_info_directory", ["events", "info", "{empty_dir}"], ("{empty_dir}",)),
    ("events_info_sensor_negative", ["events", "info", "{events}", "--sensor_size", "-3,5"],
     ("sensor_size",)),
    ("events_info_sensor_word", ["events", "info", "{events}", "--sensor_size", "34,x"],
     ("--sensor_size",)),
    ("events_show_huge_sensor", ["events", "show", "{events}", "-o", "{tmp}/v.png",
                                 "--sensor_size", "[100000,100000]"],
     ("sensor",)),
    ("events_show_sensor_zero", ["events", "show", "{events}", "-o", "{tmp}/v.png",
                                 "--sensor_size", "0,5"],
     ("sensor",)),
    ("events_show_sensor_short", ["events", "show", "{events}", "-o", "{tmp}/v.png",
                                  "--sensor_size", "34"],
     ("--sensor_size",)),
    ("events_show_out_missing", ["events", "show", "{events}"], ("out",)),
    ("events_show_out_format", ["events", "show", "{events}", "-o", "{tmp}/v.txt"], ("v.txt",)),
    ("events_show_repr_unknown", ["events", "show", "{events}", "-o", "{tmp}/v.png", "--repr",
                                  "voxl"],
     ("voxl",)),
    ("events_show_repr_args_typo", ["events", "show", "{events}", "-o", "{tmp}/v.png", "--repr",
                                    "voxel", "--repr_args", '{{"binz": 3}}'],
     ("binz",)),
    ("events_show_repr_args_not_json", ["events", "show", "{events}", "-o", "{tmp}/v.png",
                                        "--repr_args", "bins=3"],
     ("--repr_args",)),
    ("events_convert_out_format", ["events", "convert", "{events}", "{tmp}/out.txt"], ("out.txt",)),
    ("events_convert_missing", ["events", "convert", "{tmp}/none.npz", "{tmp}/o.npz"],
     ("none.npz",)),
    ("events_simulate_missing", ["events", "simulate", "{tmp}/none.png", "{tmp}/o.npz"],
     ("none.png",)),
    ("events_simulate_corrupt_image", ["events", "simulate", "{corrupt_images}/broken.png",
                                       "{tmp}/o.npz"],
     ("broken.png",)),
    ("events_simulate_threshold_negative", ["events", "simulate", "{images}/0.png", "{tmp}/o.npz",
                                            "--pos_threshold", "-1"],
     ("--pos_threshold",)),
    ("events_simulate_duration_zero", ["events", "simulate", "{images}/0.png", "{tmp}/o.npz",
                                       "--duration", "0"],
     ("--duration",)),
    ("events_simulate_one_frame", ["events", "simulate", "{one_frame}", "{tmp}/o.npz"],
     ("{one_frame}",)),
    ("events_simulate_fps_negative", ["events", "simulate", "{images}", "{tmp}/o.npz", "--fps",
                                      "-5"],
     ("--fps",)),
    ("report_missing", ["report", "{tmp}/nothing"], ("nothing",)),
    ("report_not_a_run", ["report", "{empty_dir}"], ("{empty_dir}",)),
    ("report_a_file", ["report", "{text}"], ("{text}",)),
    ("report_no_argument", ["report"], ("run_dir",)),
    ("report_option_unknown", ["report", "{run}", "--bogus"], ("bogus",)),
]

# fmt: on

# Mistakes that visrep does not catch yet, as strict xfails so each one shows up when fixed
# (name -> where and why). Empty: every case is caught.
UNCHECKED: dict[str, str] = {}
CASES = FIT + EVALUATE + TOOLS
PARAMS = [
    pytest.param(argv, expected, id=name, marks=[pytest.mark.xfail(strict=True, reason=why)]
                 if (why := UNCHECKED.get(name)) else [])
    for name, argv, expected in CASES
]  # fmt: skip


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny trained run and every bad file the cases point at."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    run = tmp / "run"
    assert main(["fit", "--config", "quickstart", *FAST, *TINY, "--run_dir", str(run)]) == 0
    ckpt = run / "checkpoints" / "best.ckpt"
    p: dict[str, Path] = {"tmp": tmp, "run": run, "ckpt": ckpt}

    def at(name: str, rel: str) -> Path:
        p[name] = tmp / rel
        return p[name]

    at("empty_dir", "empty").mkdir()
    at("text", "notes.txt").write_text("not a run, an image or a checkpoint\n")
    at("empty_file", "empty.ckpt").write_bytes(b"")
    raw = ckpt.read_bytes()
    at("truncated", "truncated.ckpt").write_bytes(raw[: len(raw) // 2])
    rng = np.random.default_rng(0)
    at("random", "random.ckpt").write_bytes(rng.bytes(4096))
    at("random_npz", "random.npz").write_bytes(rng.bytes(4096))
    torch.save(torch.zeros(3, 3), at("tensor", "tensor.ckpt"))
    torch.save({"state_dict": {}, "obj": Path("x")}, at("pickled", "pickled.ckpt"))
    saved = torch.load(ckpt, weights_only=True)
    torch.save({"state_dict": saved["state_dict"]}, at("old_format", "old.ckpt"))
    wide = copy.deepcopy(saved)  # the weights of width 8, hyper-parameters of width 16
    wide["hyper_parameters"]["backbone"]["init_args"]["width"] = 16
    torch.save(wide, at("misfit_width", "misfit_width.ckpt"))
    five = copy.deepcopy(saved)  # trained on 10 classes, says 5
    five["visrep"]["data_spec"]["num_classes"] = 5
    five["visrep"]["data_spec"]["class_names"] = list("01234")
    torch.save(five, at("misfit_classes", "misfit_classes.ckpt"))
    for name, text in {
        "bad_yaml": "trainer:\n  max_epochs: [1,\n",
        "empty_yaml": "",
        "list_yaml": "- fit\n- test\n",
        "scalar_yaml": "42\n",
        "unknown_key_yaml": "trainer:\n  max_epoch: 3\n",
        "unknown_section_yaml": "optimiser:\n  lr: 0.1\n",
    }.items():
        at(name, f"{name}.yaml").write_text(text)
    at("binary_yaml", "binary.yaml").write_bytes(b"\xff\xfe\x00\x81" * 64)
    at("images", "images").mkdir()
    for i in range(3):
        img = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        Image.fromarray(img).save(p["images"] / f"{i}.png")
    at("corrupt_images", "corrupt").mkdir()
    (p["corrupt_images"] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(64))
    at("one_frame", "one_frame").mkdir()
    shutil.copy(p["images"] / "0.png", p["one_frame"] / "0.png")
    p["events"] = tmp / "events.npz"
    assert main(["events", "simulate", str(p["images"] / "0.png"), str(p["events"])]) == 0
    return {k: str(v) for k, v in p.items()}


def check_error(code: int, out: str, err: str, expected: tuple[str, ...]) -> str:
    """Exit 2, stderr is exactly one non-empty line ``error: ...`` holding ``expected``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out[-2000:], err[-2000:])
    assert "Traceback" not in out + err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.mark.parametrize(("argv", "expected"), PARAMS)
def test_bad_command_line_is_one_error_line(
    paths: dict[str, str], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    argv: list[str], expected: tuple[str, ...],
) -> None:  # fmt: skip
    monkeypatch.chdir(paths["tmp"])  # a default run directory lands in the test's folder
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:  # the console would print them
        code = main([a.format(**paths) for a in argv])
    out, err = capfd.readouterr()
    shown = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    check_error(code, out, shown + err, tuple(e.format(**paths) for e in expected))


def test_failed_commands_leave_no_run_directory_behind(
    paths: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default run directories are runs/<name>-<time> here
    assert main(["fit", *FAST, *IDX, "--data.root", str(tmp_path / "nowhere")]) == 2
    assert main(["predict", "--ckpt_path", paths["misfit_width"], "--data.path",
                 paths["images"]]) == 2  # fmt: skip
    assert main(["fit", *FAST, "--run_dir", "deep/new/run", "--trainer.max_epochs", "0"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_the_table_is_large_and_covers_every_command() -> None:
    ids = [c[0] for c in CASES]
    assert len(CASES) >= 80 and len(set(ids)) == len(ids)
    first = {c[1][0] for c in CASES}
    assert {"fit", "validate", "test", "predict", "inspect", "explain", "attack", "events",
            "report"} <= first  # fmt: skip
    tools = {tuple(c[1][:2]) for c in CASES if c[1][0] in ("inspect", "events")}
    for sub in (("inspect", "model"), ("inspect", "stability"), ("inspect", "compare"),
                ("events", "info"), ("events", "show"), ("events", "convert"),
                ("events", "simulate")):  # fmt: skip
        assert sub in tools, sub


# A handful through the real console script: its stderr is exactly the error line.
SCRIPT_CASES: list[Case] = [
    ("script_max_epochs", ["fit", "--trainer.max_epochs", "-5"], ("max_epochs",)),
    ("script_huge_sensor", ["events", "show", "{events}", "-o", "{tmp}/s.png", "--sensor_size",
                            "[100000,100000]"], ("sensor",)),
]  # fmt: skip


def test_console_script_prints_one_error_line(paths: dict[str, str]) -> None:
    exe = Path(sys.executable).with_name("visrep")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        (case, subprocess.Popen([str(exe), *[a.format(**paths) for a in case[1]]], env=env,
                                cwd=paths["tmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True))
        for case in SCRIPT_CASES
    ]  # fmt: skip
    for (_, _, expected), proc in procs:
        out, err = proc.communicate(timeout=300)
        check_error(proc.returncode, out, err, tuple(e.format(**paths) for e in expected))
