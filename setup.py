"""spacer_jax: JAX-native simulator and self-play trainer for human-like traffic agents."""

from setuptools import find_packages, setup

setup(
    name='spacer_jax',
    version='0.1.0',
    description=('Self-Play Anchoring with Centralized Reference Models (SPACER) in JAX: '
                 'a Waymax-compatible jitted simulator, a tokenized reference '
                 'transformer and an anchored PPO trainer.'),
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['spacer_jax', 'spacer_jax.*', 'experiments',
                                    'experiments.*']),
    # The packaged default reference (weights, vocabulary, ship.json): a few MB.
    package_data={'spacer_jax.models': ['assets/default_reference/*',
                                        'assets/default_reference/**/*'],
                  'spacer_jax.spacer': ['assets/pretrained/**/*']},
    include_package_data=True,
    install_requires=[
        'jax>=0.4.30',
        'flax>=0.8',
        'optax>=0.2',
        'chex>=0.1.86',
        'orbax-checkpoint>=0.5',
        'tensorflow-cpu>=2.15',
        'tensorflow-datasets>=4.9',
        'tensorboard>=2.15',
        'absl-py>=2.0',
        'ml-collections>=0.1.1',
        'matplotlib>=3.7',
        'imageio>=2.31',
        'imageio-ffmpeg>=0.4.9',
        'tqdm>=4.66',
        'numpy>=1.26',
        'scipy>=1.10',  # The generator's k-d trees.
    ],
    extras_require={
        'dev': ['pytest>=8', 'pytest-xdist>=3.5', 'hypothesis>=6.100', 'ruff>=0.5'],
    },
)
