# Dockerfile - mcpcore on Debian 12, built from this tree (podman or docker).
#
#   podman build -t mcpcore .                     the runtime (last stage)
#   podman build --target prometheus -t mcpcore-prometheus .
#   podman-compose up -d                          both, see compose.yaml
#
# The runtime stage holds the supervisor and its five workers, the
# benchmarks, and the Python binding (PYTHONPATH), built Release from the
# tree as `.ci/deps --build` and CMake do it on a host.  It runs
# `mcpcore run` on config/container.toml: the defaults, listening on every
# interface, storing under the volume /var/lib/mcpcore.  The 12 GiB
# segment needs /dev/shm of at least that size (--shm-size=13g).
#
# BASE: any Debian 12 image; where no registry is reachable, import one
# (debootstrap --variant=minbase bookworm DIR; tar -C DIR -c . |
# podman import - localhost/debian:bookworm) and pass --build-arg
# BASE=localhost/debian:bookworm.
ARG BASE=debian:bookworm

# Prometheus scraping the runtime's monitor: config/prometheus.yml with its
# target moved from 127.0.0.1 to the compose service `mcpcore`.
FROM ${BASE} AS prometheus
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends prometheus && \
	rm -rf /var/lib/apt/lists/*
COPY config/prometheus.yml /etc/prometheus/mcpcore.yml.in
RUN sed 's/"127\.0\.0\.1:9464"/"mcpcore:9464"/' /etc/prometheus/mcpcore.yml.in \
	> /etc/prometheus/mcpcore.yml && grep -q '"mcpcore:9464"' /etc/prometheus/mcpcore.yml
ENTRYPOINT ["prometheus", "--config.file=/etc/prometheus/mcpcore.yml", \
	"--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]

FROM ${BASE} AS runtime
COPY . /src
RUN /src/.ci/deps --build && rm -rf /var/lib/apt/lists/* && \
	cmake -S /src -B /src/build -DCMAKE_BUILD_TYPE=Release && \
	cmake --build /src/build -j"$(nproc)" && \
	ln -s /src/build/bin/mcpcore /src/build/bin/mcpcore-bench /usr/local/bin/ && \
	mkdir -p /var/lib/mcpcore
ENV MCPCORE_CONFIG=/src/config/container.toml \
	PYTHONPATH=/src/build/python
WORKDIR /var/lib/mcpcore
VOLUME /var/lib/mcpcore
# MCP (Streamable HTTP, path /mcp) and Prometheus metrics (/metrics)
EXPOSE 3000 9464
# the supervisor is PID 1: it reaps its workers and, on SIGTERM, stops
# them in order and removes the segment
STOPSIGNAL SIGTERM
CMD ["mcpcore", "run"]
