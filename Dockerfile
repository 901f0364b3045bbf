# capdrift_fast on the official vLLM image (CUDA, pinned to the vLLM version capdrift_fast is tested with):
# the image brings vLLM, torch and CUDA; docker/install.sh adds capdrift_fast without changing any of
# them (CI runs the same script in a fresh virtual environment: no Docker engine runs there).
#   docker build -t capdrift_fast:0.1.0 .
#   docker run --rm --gpus all --shm-size 8g \
#     -v "$HOME/.cache/huggingface:/home/capdrift/.cache/huggingface" -v "$PWD/runs:/runs" \
#     -v "$PWD/configs:/configs:ro" -v /srv/capdrift-data:/data:ro -e HF_HUB_OFFLINE=1 \
#     capdrift_fast:0.1.0 run /configs/gpu_sweep.yaml --out /runs/sweep
# Volumes, environment, sharded array jobs and merge: docs/runbook_cloud_gpu.md.
FROM vllm/vllm-openai:v0.32.0

ENV PYTHONUNBUFFERED=1 \
    HOME=/home/capdrift \
    HF_HOME=/home/capdrift/.cache/huggingface \
    CAPDRIFT_DATA_DIR=/data \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1

COPY pyproject.toml README.md /opt/capdrift_fast/
COPY capdrift_fast /opt/capdrift_fast/capdrift_fast
COPY docker/install.sh /opt/capdrift_fast/docker/install.sh

# The image's Python is a system interpreter; inside an image, installing into it is the point (PEP 668
# markers, where a base has them, do not apply). The job runs as uid/gid 1000 (Ubuntu 24.04 bases ship an
# `ubuntu` user with that uid: it is removed first).
RUN PIP_BREAK_SYSTEM_PACKAGES=1 UV_BREAK_SYSTEM_PACKAGES=1 bash /opt/capdrift_fast/docker/install.sh /opt/capdrift_fast \
    && if id -u ubuntu >/dev/null 2>&1; then userdel ubuntu; fi \
    && useradd --create-home --no-log-init --uid 1000 --user-group capdrift \
    && mkdir -p /runs /data /home/capdrift/.cache/huggingface \
    && chown -R 1000:1000 /runs /home/capdrift

USER 1000:1000
WORKDIR /runs
VOLUME ["/home/capdrift/.cache/huggingface", "/runs"]
ENTRYPOINT ["capdrift"]
CMD ["--help"]
