# Tasks for developers. The README's quick start uses plain go commands;
# these are shortcuts for the tiers and tools around them.

.PHONY: test test-short test-long fuzz bench bench-compare compat cli jetstream jetstream-long ci

# The default tier, as CI and the README run it.
test:
	go test -race -count=1 ./...

# The smoke run: every test, the sweeps sampled; under a minute.
test-short:
	go test -short -count=1 ./...

# The long tier: run before resolving anything that touches durability,
# and record its summary lines in docs/RELIABILITY.md.
test-long:
	BIGQUEUE_LONG=1 go test -timeout 3h -run '^TestCrashLoop$$' -v .
	BIGQUEUE_LONG=1 go test -timeout 1h -run '^TestConcurrentKill$$' -v .
	BIGQUEUE_LONG=1 go test -timeout 0 -run '^TestPowerLoss$$' -v .
	BIGQUEUE_LONG=1 go test -timeout 3h -run '^TestCorruption' -v .
	BIGQUEUE_LONG=1 go test -timeout 1h -run '^TestDiskFull$$' -v .

# Ten minutes per fuzz target (FUZZTIME=1m for less).
FUZZTIME ?= 10m
fuzz:
	for t in FuzzRecordDecode FuzzIndexDecode FuzzOpenDirectory FuzzInspect; do \
		go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x -parallel 1 . || exit 1; \
	done

# The package's own benchmark grid.
bench:
	go test -run '^$$' -bench . -benchmem .

# The comparison with the original and other queues (about 10 minutes).
bench-compare:
	cd benchmarks && go run . -out results

# Differential tests against grandecola/bigqueue.
compat:
	cd compat && go test -count=1 ./...

# The command-line tool's end-to-end tests (they build the binary).
cli:
	cd cmd/bigqueue && go test -race -count=1 ./...

# The JetStream forwarder module: its tests embed a NATS server (about
# three minutes under -race: the exactly-once and the 60 s outage tests).
jetstream:
	cd jetstream && go test -race -count=1 ./...

# Its long tier: ten minutes of kills and server restarts, and the
# forwarding/direct throughput ratio on 1,000,000 messages of 128 B.
jetstream-long:
	cd jetstream && BIGQUEUE_LONG=1 go test -timeout 1h -count=1 -run '^(TestExactlyOnceUnderKills|TestThroughputRatio)$$' -v .

# What CI runs.
ci:
	bash .ci/run
