# ditto-mqtt-bridge container image: build with Swift 6.3, run on a slim Debian with only libmosquitto1.
#   docker build -t ditto-mqtt-bridge .
#   docker run --rm ditto-mqtt-bridge --version
# No container engine runs on the project's machines; Tests/DeploymentTests/ContainerImageTests.swift rebuilds the
# runtime stage as a debootstrap chroot from these very lines (RUN, COPY, USER, WORKDIR, HEALTHCHECK), builds the
# binary with the build stage's own command, and runs the compose service in it.
# The packages of every shared library the binary loads (`ldd`; the test holds this line to the chroot's ldd):
# ldd: libc6 libgcc-s1 libstdc++6 libmosquitto1 libssl3

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libmosquitto-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Package.swift names every target, tests included, so all of them must be present to resolve.
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
# The Swift runtime linked in: the runtime stage needs no Swift toolchain libraries.
RUN swift build -c release --product ditto-mqtt-bridge --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/ditto-mqtt-bridge" /out/ditto-mqtt-bridge

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libmosquitto1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/ditto-mqtt-bridge --create-home \
        --shell /usr/sbin/nologin ditto-bridge
COPY --from=build /out/ditto-mqtt-bridge /usr/local/bin/ditto-mqtt-bridge
COPY Config/ /etc/ditto-mqtt-bridge/
USER ditto-bridge
WORKDIR /var/lib/ditto-mqtt-bridge
# /metrics, /health, /ready (operations.listen in bridge.docker.yaml).
EXPOSE 9464
# No curl in the image: the binary probes its own endpoint (exit 0 on 200).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/ditto-mqtt-bridge", "probe", "--config", "/etc/ditto-mqtt-bridge/bridge.docker.yaml", "--path", "/health"]
ENTRYPOINT ["/usr/local/bin/ditto-mqtt-bridge"]
CMD ["run", "--config", "/etc/ditto-mqtt-bridge/bridge.docker.yaml", "--log-format", "json"]
