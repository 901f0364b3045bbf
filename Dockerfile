# capdrift_fast on the official vLLM image (CUDA). vLLM comes with the image; we add the package.
#   docker build -t capdrift_fast .
#   docker run --gpus all -v $HOME/.cache/huggingface:/home/capdrift/.cache/huggingface \
#     -v $PWD/runs:/runs -v $PWD/configs:/configs capdrift_fast run /configs/gpu_sweep.yaml --out /runs/sweep
FROM vllm/vllm-openai:v0.26.0

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/capdrift/.cache/huggingface

WORKDIR /opt/capdrift_fast
COPY pyproject.toml README.md ./
COPY capdrift_fast ./capdrift_fast
RUN python3 -m pip install --no-deps . \
    && python3 -m pip install "polars>=1.20" "typer>=0.12" langdetect "nltk>=3.9" immutabledict \
    && useradd --create-home --uid 1000 capdrift \
    && mkdir -p /runs /home/capdrift/.cache/huggingface \
    && chown -R capdrift /runs /home/capdrift

USER capdrift
VOLUME ["/home/capdrift/.cache/huggingface", "/runs"]
WORKDIR /runs
ENTRYPOINT ["capdrift"]
CMD ["--help"]
