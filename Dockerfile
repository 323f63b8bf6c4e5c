# The grading image. Under `autograder grade --backend docker` only the student's kernel runs in it;
# the grader, the hidden tests, the reference material and the result store stay on the host, so
# none of them is in this image. MNIST is not baked in: the backend mounts it read-only at /data.
#
# Build (does all of this, including the base image and the proxy CA, idempotently):
#     uv run --frozen python -m autograder.sandbox.container_setup
# By hand, from a checkout (ca/, optional, holds *.crt certificates the build's downloads need):
#     docker build --build-arg BASE=localbase:bookworm -t autograder-grader .
# A real deployment can use CPU-only torch wheels (the default is exactly uv.lock's wheels):
#     docker build --build-arg BASE=debian:bookworm-slim-with-python3-venv \
#         --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t autograder-grader .
# The base needs python3 (3.11, as in uv.lock), python3-venv and ca-certificates.
ARG BASE=localbase:bookworm

FROM $BASE AS uv
ARG UV_VERSION=0.13.9
# A proxy's CA certificate, when the build needs one, lives only in these throw-away stages.
# (Dockerfile is named so that the COPY has a source when there is no ca/ folder.)
COPY Dockerfile ca* /tmp/ca/
RUN set -e; cp /tmp/ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null || true; \
    update-ca-certificates >/dev/null 2>&1; \
    python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir --quiet "uv==$UV_VERSION"
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_COMPILE_BYTECODE=1 UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
WORKDIR /build

# Exactly the locked versions (the host's venv has the same ones: seeded training reproduces).
# Exported in a stage of its own: an edit of pyproject.toml that leaves them alone reuses the venv.
FROM uv AS lock
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv export --frozen --no-dev --no-hashes --no-emit-project -o /requirements.txt >/dev/null

FROM uv AS deps
ARG TORCH_INDEX=
COPY --from=lock /requirements.txt ./
RUN set -e; python3 -m venv /opt/venv; \
    if [ -z "$TORCH_INDEX" ]; then \
        /opt/uv/bin/uv pip install --quiet --python /opt/venv/bin/python --no-deps -r requirements.txt; \
    else \
        grep -E '^(torch|torchvision)==' requirements.txt | sed 's/ *;.*//' > torch.txt; \
        grep -vE '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' requirements.txt > rest.txt; \
        /opt/uv/bin/uv pip install --quiet --python /opt/venv/bin/python --no-deps -r rest.txt; \
        /opt/uv/bin/uv pip install --quiet --python /opt/venv/bin/python --no-deps \
            --index-url "$TORCH_INDEX" -r torch.txt; \
    fi

FROM uv AS package
COPY pyproject.toml README.md ./
COPY autograder ./autograder
RUN /opt/uv/bin/uv build --quiet --wheel --out-dir /dist .

FROM $BASE
RUN useradd --create-home --uid 1000 --shell /bin/bash student && mkdir -p /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=package /dist /tmp/dist
RUN /opt/venv/bin/python -m pip install --quiet --no-deps --no-index /tmp/dist/*.whl && rm -rf /tmp/dist
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
USER 1000
WORKDIR /home/student
CMD ["python3"]
