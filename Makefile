# A thin front for CMake: the two README commands and a few more.
#   make run    build (release) and run the main job: `hostmem simulate`
#   make test   install what is missing, build with ASan+UBSan, run every test
#   make tsan   the concurrency tests under ThreadSanitizer (CI runs it too)
#   make bench  build (release) and run the benchmarks
#   make fuzz   build the libFuzzer targets (clang) and run each for FUZZ_SECONDS (fuzz/README.md)
#   make coverage  line and branch coverage of src/ by every test (gcc --coverage, gcovr; scripts/coverage.sh)
#   make install [PREFIX=/usr/local]
BUILD ?= build
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test tsan fuzz bench coverage install deps clean

deps:
	@./scripts/deps.sh

run: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DHM_BUILD_TESTS=OFF -DHM_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)
	./$(BUILD)/release/hostmem simulate

# what the drop-in malloc's tests run on it (tests/dropin, tests/programs)
DROPIN_PACKAGES = g++ valgrind python3 sqlite3 lua5.4 git redis-server redis-tools libpython3.11-testsuite
# the runtimes the adapters host (adapters/, tests of hostmem/lua.h, sqlite.h, python.h)
HOSTED_PACKAGES = liblua5.4-dev libsqlite3-dev python3-dev

test: deps
	@HM_EXTRA_PACKAGES="$(DROPIN_PACKAGES) $(HOSTED_PACKAGES)" ./scripts/deps.sh
	cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DHM_SANITIZE=address,undefined -DHM_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/asan -j $(JOBS)
	ctest --test-dir $(BUILD)/asan --output-on-failure -j $(JOBS) --timeout 600
	@./$(BUILD)/asan/hostmem info | grep 'write watch' | sed 's/^/tested with /'

tsan: deps
	@HM_EXTRA_PACKAGES="$(HOSTED_PACKAGES)" ./scripts/deps.sh
	cmake -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=Debug -DHM_SANITIZE=thread -DHM_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/tsan -j $(JOBS)
	ctest --test-dir $(BUILD)/tsan --output-on-failure -L threads --timeout 600

fuzz:
	@HM_EXTRA_PACKAGES="clang" ./scripts/deps.sh
	@HM_EXTRA_PACKAGES="libclang-rt-$$(clang -dumpversion | cut -d. -f1)-dev" ./scripts/deps.sh
	CC=clang cmake -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=Debug -DHM_FUZZ=ON -DHM_SANITIZE=address,undefined -DHM_BUILD_TESTS=OFF -DHM_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/fuzz -j $(JOBS)
	FUZZ_FLAGS="$(FUZZ_FLAGS)" ./scripts/fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench:
	@HM_EXTRA_PACKAGES="libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 valgrind time python3 lua5.4 sqlite3 redis-server redis-tools $(HOSTED_PACKAGES)" ./scripts/deps.sh
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DHM_BUILD_TESTS=OFF -DHM_BUILD_BENCH=ON >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)
	./$(BUILD)/release/bench/bench_vm
	./$(BUILD)/release/bench/bench_manager
	./$(BUILD)/release/bench/bench_dirty
	./$(BUILD)/release/bench/bench_alloc
	./$(BUILD)/release/bench/bench_small
	./$(BUILD)/release/bench/bench_watch
	if [ -x ./$(BUILD)/release/bench/bench_hosted ]; then ./$(BUILD)/release/bench/bench_hosted; fi
	if [ -x ./$(BUILD)/release/bench/bench_hosted_python ]; then ./$(BUILD)/release/bench/bench_hosted_python; fi
	./bench/bench_dropin.sh $(BUILD)/release

coverage:
	JOBS=$(JOBS) ./scripts/coverage.sh $(BUILD)/coverage

install: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)
	cmake --install $(BUILD)/release

clean:
	rm -rf $(BUILD)
