"""What each key of the config may hold, by group: the range and meaning rules of the validation boundary.

A rule sits next to the key it describes and exists only where a key has a range or a meaning to check; which keys
a group built from a ``_target_`` may hold at all comes from that target's signature (``signatures``). The groups
that node-run itself reads (``trainer``, ``logger``, ``paths``, ``data``, ``study``) list all their keys here.
"""

from __future__ import annotations

from .rules import Rule, Schema, is_number, is_whole, flag, in_range, non_negative, numbers, one_of, positive, text, whole

TARGET = text("the class or function to instantiate", "package.module.Name")
EXAMPLE_TARGETS = {
    "task._target_": "node_experiments.tasks.classification.ClassificationTask",
    "model._target_": "node_experiments.models.mnist.ODENet",
    "study._target_": "node_experiments.studies.nfe_study.run_nfe_study",
    "optimizer._target_": "torch.optim.Adam",
    "scheduler._target_": "torch.optim.lr_scheduler.ExponentialLR",
}

# ------------------------------------------------------------------------------------------ the groups
GROUPS = ("paths", "task", "data", "model", "solver", "optimizer", "scheduler", "trainer", "logger", "study")

PATHS: Schema = {
    "data_dir": text("the folder of the data sets", "data"),
    "output_dir": text("the folder runs are written under", "outputs"),
}

TRAINER: Schema = {
    "device": text("the device to train on (auto, cpu, cuda or cuda:N)", "auto"),
    "max_epochs": whole("the number of epochs to train", 10),
    "seed": whole("the random seed", 0, minimum=0, maximum=2**32 - 1),
    "num_threads": whole("torch's number of CPU threads", 1),
    "grad_clip_norm": positive("the largest global norm of the gradients", 1.0, optional=True),
    "divergence_factor": Rule("the factor of the run's loss scale above which a loss is a divergence",
                              "a finite number > 1", lambda v: is_number(v) and v > 1, 100, optional=True),
    "progress_bar": flag("whether to show a progress bar"),
    "checkpoint": flag("whether to write checkpoints"),
    "resume": text("the run folder or checkpoint to continue from", "outputs/mnist_odenet/DATE/TIME", optional=True),
    "resume_changes": one_of("what resuming with other settings does", ("refuse", "apply")),
}

LOGGER: Schema = {
    "tensorboard": flag("whether to write TensorBoard events"),
    "log_every_n_steps": whole("the number of training steps between logged scalars", 50),
}

# ---- data, by the task that reads it
IMAGE_DATA: Schema = {
    "name": text("the data group's name", "mnist"),
    "dataset": text("the torchvision.datasets class", "MNIST"),
    "root": text("the folder that holds <dataset>/raw", "data"),
    "download": flag("whether to download a missing data set"),
    "train_subset": whole("the number of training images used (the first N)", 6000, optional=True),
    "test_subset": whole("the number of test images used (the first N)", 1000, optional=True),
    "batch_size": whole("the number of images per training batch", 128),
    "test_batch_size": whole("the number of images per test batch", 1000),
    "num_workers": whole("the number of data loader worker processes", 0, minimum=0),
    "random_crop_padding": whole("the random crop's zero padding in pixels (0: no augmentation)", 4, minimum=0),
    "channels": whole("the images' number of channels", 1),
    "image_size": whole("the images' height and width in pixels", 28),
    "num_classes": whole("the number of classes", 10, minimum=2),
}

SPIRAL_DATA: Schema = {
    "name": text("the data group's name", "spirals"),
    "n_spirals": whole("the number of spirals (training and test)", 1000, minimum=2),
    "test_size": whole("the number of test spirals", 200),
    "n_obs": whole("the number of observations per spiral", 100),
    "window": whole("the number of grid times per window", 100),
    "noise": non_negative("the observation noise's standard deviation", 0.1),
    "curve": one_of("the spiral curves", ("mirrored", "torchdiffeq_example")),
    "grid_points": whole("the number of points of the base curve", 1000),
    "turns": positive("the base curve's number of turns", 3.0),
    "growth": positive("the spiral's growth, r = growth * theta", 0.3),
    "test_range": one_of("where the test spirals start", ("same", "observed")),
    "seed": whole("the seed of the data set", 0, minimum=0, maximum=2**63 - 1),
    "batch_size": whole("the number of spirals per training batch", 100),
    "test_batch_size": whole("the number of spirals per test batch", 200),
}

_SAMPLED = {
    "name": text("the data group's name", "two_moons"),
    "batch_size": whole("the number of samples per batch", 256),
    "batches_per_epoch": whole("the number of batches per epoch", 50),
    "eval_samples": whole("the number of evaluation samples", 4096),
    "eval_batch_size": whole("the number of evaluation samples per batch", 4096),
    "eval_seed": whole("the seed of the evaluation samples", 1234, minimum=0, maximum=2**63 - 1),
    "plot_limit": positive("the half-width of the figures' window", 3.0),
}
ENERGY_DATA: Schema = {
    **_SAMPLED,
    "target": one_of("the target density", ("U1", "U2", "U3", "U4")),
    "dim": whole("the dimension of the target (the energies U1..U4 are 2-D)", 2, minimum=2, maximum=2),
}
_TOYS = ("two_moons", "two_circles", "eight_gaussians", "checkerboard", "rings", "pinwheel")
SAMPLE_DATA: Schema = {**_SAMPLED, "dataset": one_of("the 2-D data set", _TOYS)}
SAMPLERS: dict[str, Schema] = {
    "two_moons": {
        "noise": non_negative("the noise's standard deviation relative to the moons' radius", 0.05),
        "scale": positive("the moons' radius", 1.5),
        "centre": Rule("the point of make_moons' plane moved to the origin", "two finite numbers",
                       lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v), [0.5, 0.25]),
    },
    "two_circles": {
        "noise": non_negative("the noise's standard deviation relative to the outer radius", 0.05),
        "factor": in_range("the inner radius relative to the outer", 0.5, 0, 1, low_open=True, high_open=True),
        "scale": positive("the outer radius", 2.0),
    },
    "eight_gaussians": {
        "scale": positive("the centres' radius (before FFJORD's division by 1.414)", 4.0),
        "std": positive("the modes' standard deviation (before FFJORD's division by 1.414)", 0.5),
    },
    "checkerboard": {},
    "rings": {
        "radii": numbers("the rings' radii", [0.75, 1.5, 2.25, 3.0], lambda x: x > 0, "numbers > 0"),
        "noise": non_negative("the noise's standard deviation", 0.08),
    },
    "pinwheel": {
        "arms": whole("the number of arms", 5),
        "radial_std": positive("the radial standard deviation", 0.3),
        "tangential_std": positive("the tangential standard deviation", 0.1),
        "rate": non_negative("how fast an arm turns with exp(radius)", 0.25),
    },
}

# ---- tasks, with the data and model groups they read
_TASKS = "node_experiments.tasks"
_FIGURES = {
    "figure_samples": whole("the number of samples shown in the figures", 20000),
    "grid_points": whole("the density images' points per side", 120, minimum=2),
    "figure_fractions": numbers(
        "the figures' fractions of the way from noise to data", [0.0, 0.5, 1.0], lambda x: 0 <= x <= 1, "numbers in [0, 1]"
    ),
}
_MODELS = "node_experiments.models"
_CLASSIFIERS = ("mnist.ODENet", "mnist.ResNet", "mnist.MLP")
_FLOWS = ("flows.PlanarCNF", "flows.PlanarNF", "ffjord.FFJORD")
_SEQUENCE_MODELS = ("latent_ode.LatentODE", "sequence_rnn.SequenceRNN")
TASKS: dict[str, tuple[Schema, Schema, tuple[str, ...]]] = {  # task class -> (task keys, data keys, known models)
    f"{_TASKS}.classification.ClassificationTask": ({}, IMAGE_DATA, _CLASSIFIERS),
    f"{_TASKS}.sequences.SequenceTask": (
        {
            "objective": one_of("the training objective", ("reconstruct", "forecast")),
            "eval_seed": whole("the seed of the test ELBO's posterior samples", 0, minimum=0, maximum=2**63 - 1),
            "figure_spirals": whole("the number of test spirals in the predictions figure", 4),
            "figure_latent_spirals": whole("the number of test spirals in the latent figure", 100, minimum=2),
            "latent_offsets": numbers(
                "the latent moves, in standard deviations", [-1, 0, 1], lambda x: True, "finite numbers"
            ),
        },
        SPIRAL_DATA,
        _SEQUENCE_MODELS,
    ),
    f"{_TASKS}.densities.DensityMatchingTask": (_FIGURES, ENERGY_DATA, _FLOWS),
    f"{_TASKS}.densities.MaximumLikelihoodTask": (_FIGURES, SAMPLE_DATA, _FLOWS),
}
FLOW_DIRECTIONS = {  # the direction a planar NF needs for the task to train through it
    f"{_TASKS}.densities.DensityMatchingTask": "sample",
    f"{_TASKS}.densities.MaximumLikelihoodTask": "density",
}

# ---- models: rules for the arguments of the project's models (their keys: the classes' signatures)
_IMAGES = {
    "in_channels": whole("the input images' number of channels", 1),
    "num_classes": whole("the number of classes", 10, minimum=2),
}
_GROUP_NORM_WIDTH = Rule(
    "the number of feature channels",
    "a whole number >= 1 that is at most 32 or a multiple of 32 (GroupNorm uses min(32, width) groups)",
    lambda v: is_whole(v) and v >= 1 and (v <= 32 or v % 32 == 0),
    64,
)
_FLOW = {
    "dim": whole("the data's dimension", 2),
    "t1": positive("the end time of the flow", 1.0),
    "probe": one_of("Hutchinson's probe distribution", ("rademacher", "gaussian")),
    "base_std": positive("the base density's standard deviation", 1.0),
    "augment_dim": whole("the number of ANODE's extra dimensions", 0, minimum=0),
}
_SEQUENCES = {
    "obs_dim": whole("the observations' dimension", 2),
    "obs_std": positive("the Gaussian likelihood's fixed standard deviation (by default data.noise)", 0.1),
}
_CELLS = ("gru", "rnn")
MODELS: dict[str, Schema] = {
    f"{_MODELS}.mnist.ODENet": {**_IMAGES, "width": _GROUP_NORM_WIDTH, "augment_dim": _FLOW["augment_dim"]},
    f"{_MODELS}.mnist.ResNet": {**_IMAGES, "width": _GROUP_NORM_WIDTH,
                                "num_blocks": whole("the number of residual blocks", 6, minimum=0)},  # fmt: skip
    f"{_MODELS}.mnist.MLP": {**_IMAGES, "image_size": whole("the input images' height and width in pixels", 28),
                             "hidden": whole("the number of hidden units", 300)},  # fmt: skip
    f"{_MODELS}.flows.PlanarCNF": {
        **_FLOW,
        "width": whole("the number of hidden units M", 64),
        "hidden": whole("the width of the hypernetwork's hidden layers", 32),
        "trace": one_of("the trace method", ("exact", "closed_form", "hutchinson")),
    },
    f"{_MODELS}.ffjord.FFJORD": {
        **_FLOW,
        "hidden": Rule("the hidden layers' widths", "a non-empty list of whole numbers >= 1",
                       lambda v: isinstance(v, list) and len(v) > 0 and all(is_whole(x) and x >= 1 for x in v),
                       [64, 64, 64]),  # fmt: skip
        "activation": one_of("the activation between the layers", ("tanh", "softplus", "elu", "swish")),
        "trace": one_of("the trace method", ("hutchinson", "exact")),
    },
    f"{_MODELS}.flows.PlanarNF": {
        **_FLOW,
        "layers": whole("the number of planar layers K", 32),
        "direction": one_of("the direction the layers map", ("sample", "density")),
    },
    f"{_MODELS}.latent_ode.LatentODE": {
        **_SEQUENCES,
        "latent_dim": whole("the latent state's dimension", 4),
        "rnn_hidden": whole("the recognition network's hidden units", 25),
        "dynamics_hidden": whole("the dynamics' hidden units", 20),
        "dynamics_layers": whole("the dynamics' number of hidden layers", 1),
        "decoder_hidden": whole("the decoder's hidden units", 20),
        "rnn_cell": one_of("the recognition network's cell", _CELLS),
    },
    f"{_MODELS}.sequence_rnn.SequenceRNN": {
        **_SEQUENCES,
        "hidden": whole("the number of hidden units", 25),
        "cell": one_of("the recurrent cell", _CELLS),
    },
}
REGULARIZATION: Schema = {  # model.regularization of every ODE model: RNODE's penalty weights
    "kinetic": non_negative("the kinetic energy's weight in the loss (0: off)", 0.01),
    "jacobian": non_negative("the Jacobian Frobenius norm's weight in the loss (0: off)", 0.01),
}

# ---- optimizer and scheduler: any torch class (their keys: its signature); these values, where it takes them
_RATE = positive("the learning rate", 0.1)
OPTIMIZER_VALUES: Schema = {
    "lr": _RATE,
    "weight_decay": non_negative("the weight decay", 0.0),
    "momentum": in_range("the momentum", 0.9, 0, 1, low_open=False, high_open=True),
    "eps": positive("the denominator's epsilon", 1e-8),
    "betas": Rule(
        "the averaging coefficients",
        "two numbers in [0, 1)",
        lambda v: isinstance(v, list) and len(v) == 2 and all(is_number(x) and 0 <= x < 1 for x in v),
        [0.9, 0.999],
    ),
}
_DECAY = in_range("the learning rate's factor", 0.1, 0, 1, low_open=True, high_open=False)
SCHEDULER_VALUES: Schema = {
    "gamma": _DECAY,
    "factor": _DECAY,
    "total_iters": whole("the number of epochs the factor applies", 0, minimum=0),
    "step_size": whole("the number of epochs between decays", 30),
    "milestones": Rule(
        "the epochs after which the learning rate decays",
        "an increasing list of whole numbers >= 1",
        lambda v: isinstance(v, list) and all(is_whole(x) and x >= 1 for x in v) and v == sorted(set(v)),
        [60, 100, 140],
    ),
    "epochs": whole("the number of epochs the schedule spans", 160),
    "fractions": Rule(
        "the fractions of training after which the learning rate decays",
        "an increasing list of numbers in (0, 1)",
        lambda v: isinstance(v, list) and len(v) > 0 and all(is_number(x) and 0 < x < 1 for x in v)
        and v == sorted(set(v)),
        [0.375, 0.625, 0.875],
    ),
}

# ---- studies
NFE_STUDY = "node_experiments.studies.nfe_study.run_nfe_study"
STUDIES: dict[str, Schema] = {
    NFE_STUDY: {
        "checkpoint": text("the trained mnist_odenet run (a run folder or its checkpoints/last.pt)",
                           "outputs/mnist_odenet/DATE/TIME"),  # fmt: skip
        "tolerances": numbers("the ODE block's tolerances (rtol = atol)", [1e-1, 1e-3, 1e-5], lambda x: x > 0,
                              "numbers > 0"),  # fmt: skip
        "batch_size": whole("the number of test images per batch", 128),
        "num_batches": whole("the number of test batches", 4),
        "timing_repeats": whole("the number of timed forward passes per batch", 3),
        "seminorm": flag("whether to count backward NFE with the seminorm too"),
    }
}
NFE_REFERENCE: Schema = {"tolerance": positive("the reference solve's tolerance (rtol = atol)", 1e-8)}  # and method
NFE_MEMORY: Schema = {
    "enabled": flag("whether to measure memory against NFE"),
    "resnet_blocks": Rule("the ResNet depths measured", "a list of whole numbers >= 1",
                          lambda v: isinstance(v, list) and all(is_whole(x) and x >= 1 for x in v), [1, 2, 4]),
}  # fmt: skip
