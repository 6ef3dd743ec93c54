"""big_batch: the large-batch training literature as composable JAX pieces."""
import setuptools

setuptools.setup(
    name="big_batch",
    version="0.1.0",
    description="Large-batch training methods for JAX: optimizers, trainer, sharding.",
    # src layout: a clone directory named big_batch never shadows the installed package.
    # src/big_batch/configs links to the top-level configs/, where commands name the files.
    package_dir={"": "src"},
    packages=setuptools.find_packages("src", include=["big_batch", "big_batch.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10.2,<0.11",
        "jaxlib>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "tensorflow-datasets>=4.9.10,<4.10",
        "grain>=0.2.18,<0.3",
        "array_record>=0.8.6,<0.9",
        # tfds imports it for builders defined inside a package but does not declare it.
        "importlib_resources",
        "ml-collections>=1.1,<1.2",
        "absl-py>=2.1,<3",
        "tensorboardX>=2.6,<3",
        "matplotlib>=3.8",
        # mnist1d imports requests at import time without declaring it.
        "mnist1d>=0.0.2",
        "requests",
        "scikit-learn>=1.4",
        "numpy>=2.0",
        "etils[epath]",
    ],
    extras_require={
        # gs:// workdirs (Cloud TPU): etils.epath reaches GCS through gcsfs.
        "gcs": ["gcsfs"],
        # .h5ad files (big_batch.singlecell); pbmc68k also needs scanpy's bundled file.
        "singlecell": ["anndata>=0.10"],
        # big_batch.rl: gymnasium's MuJoCo tasks (imageio for their rendering) and MiniGrid.
        "rl": ["gymnasium>=1.0,<2", "mujoco>=3.1", "imageio>=2.30", "minigrid>=3.0"],
        # notebooks/: run in a Jupyter kernel (nbclient executes them in the tests).
        "notebooks": ["ipykernel>=6", "nbclient>=0.10", "nbformat>=5.9"],
        "test": ["pytest>=8", "pytest-timeout>=2.3",
                 # -n 2: the suite runs on both cores (CI has 2).
                 "pytest-xdist>=3.5",
                 # gs:// workdirs, tested against a local GCS emulator.
                 "gcsfs", "gcp-storage-emulator", "anndata>=0.10",
                 # the rl extra and the notebooks extra, both exercised by the suite.
                 "gymnasium>=1.0,<2", "mujoco>=3.1", "imageio>=2.30", "minigrid>=3.0",
                 "ipykernel>=6", "nbclient>=0.10", "nbformat>=5.9"],
    },
)
