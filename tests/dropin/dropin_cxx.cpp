// dropin_cxx.cpp — every C++ operator new and delete on the drop-in malloc (src/preload/cxx.c), run
// preloaded with HOSTMEM_OPTIONS=limit=16M: plain, array, nothrow, sized delete, aligned types
// (alignas 64, 4096 and 1 MiB, with new and new[]), aligned nothrow, the explicit operator calls;
// std::bad_alloc thrown through the drop-in when the budget refuses, nullptr from the nothrow forms
// (which never call the new-handler), and a new-handler that frees a reserve once and uninstalls
// itself. Exit status 0 when every check passed; a failed check says which on stderr, status 1.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <malloc.h>

#include <hostmem/malloc.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            std::fprintf(stderr, "CHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #c);              \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

namespace {

constexpr std::size_t KiB = std::size_t(1) << 10;
constexpr std::size_t MiB = std::size_t(1) << 20;

// hides a pointer from the optimiser: the allocation is not elided
void escape(void *p) { asm volatile("" : : "g"(p) : "memory"); }

bool aligned(const void *p, std::size_t a) { return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0; }

bool from_dropin(const char *sym)
{
    void *f = dlsym(RTLD_DEFAULT, sym);
    Dl_info di;
    return f && dladdr(f, &di) && di.dli_fname && std::strstr(di.dli_fname, "libhostmem-malloc");
}

int live;
struct Counted {
    int x;
    Counted() : x(42) { ++live; }
    ~Counted() { --live; }
};

struct alignas(64) A64 {
    unsigned char b[64];
};
struct alignas(4096) A4K {
    unsigned char b[100];
};
struct alignas(1 << 20) A1M {
    unsigned char b[100];
};
static_assert(sizeof(A4K) == 4096, "A4K");
static_assert(sizeof(A1M) == (1 << 20), "A1M");

template <typename T> void fill_check(T *p, std::size_t n, unsigned char v)
{
    CHECK(p != nullptr);
    CHECK(aligned(p, alignof(T)));
    std::memset(static_cast<void *>(p), v, sizeof(T) * n);
    const unsigned char *b = reinterpret_cast<const unsigned char *>(p);
    CHECK(b[0] == v && b[sizeof(T) * n - 1] == v);
    CHECK(malloc_usable_size(static_cast<void *>(p)) >= sizeof(T) * n);
}

std::size_t live_blocks() { return mallinfo2().ordblks; }

void test_on_dropin()
{
    CHECK(hm_malloc_available());
    const char *syms[] = {"_Znwm", "_Znam", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZnwmRKSt9nothrow_t",
                          "_ZnwmSt11align_val_t", "_ZdlPvSt11align_val_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
                          "malloc", "free"};
    for (const char *s : syms) {
        if (!from_dropin(s)) std::fprintf(stderr, "%s is not the drop-in's\n", s);
        CHECK(from_dropin(s));
    }
}

void test_plain_and_array()
{
    std::size_t before = live_blocks();
    int *i = new int(5);
    CHECK(*i == 5);
    CHECK(live_blocks() == before + 1);
    delete i;
    CHECK(live_blocks() == before);
    Counted *c = new Counted;
    CHECK(live == 1 && c->x == 42);
    delete c;
    CHECK(live == 0);
    Counted *arr = new Counted[1000];
    CHECK(live == 1000);
    for (int k = 0; k < 1000; k++) CHECK(arr[k].x == 42);
    delete[] arr;
    CHECK(live == 0);
    char *big = new char[3 * MiB];
    std::memset(big, 1, 3 * MiB);
    delete[] big;
    CHECK(live_blocks() == before);
}

void test_nothrow()
{
    std::size_t before = live_blocks();
    int *i = new (std::nothrow) int(7);
    CHECK(i && *i == 7);
    delete i;
    int *a = new (std::nothrow) int[1000];
    CHECK(a);
    a[999] = 1;
    delete[] a;
    Counted *c = new (std::nothrow) Counted[10];
    CHECK(c && live == 10);
    delete[] c;
    CHECK(live == 0);
    void *p = ::operator new(100, std::nothrow);
    CHECK(p);
    ::operator delete(p, std::nothrow);
    p = ::operator new[](100, std::nothrow);
    CHECK(p);
    ::operator delete[](p, std::nothrow);
    CHECK(live_blocks() == before);
}

void test_sized_delete()
{
    std::size_t before = live_blocks();
    // the compiler's own sized deletes (-fsized-deallocation)
    struct S {
        char b[200];
    };
    S *s = new S;
    escape(s);
    delete s;
    Counted *c = new Counted[5];
    delete[] c;
    // explicit, right and wrong sizes: the heap knows each block, the size is not trusted
    void *p = ::operator new(100);
    ::operator delete(p, 100);
    p = ::operator new(100);
    ::operator delete(p, 7);
    p = ::operator new[](5000);
    ::operator delete[](p, 1);
    p = ::operator new(2 * MiB);
    ::operator delete(p, 16);
    CHECK(live_blocks() == before);
}

void test_aligned()
{
    std::size_t before = live_blocks();
    A64 *a = new A64;
    fill_check(a, 1, 1);
    delete a;
    A64 *aa = new A64[7];
    fill_check(aa, 7, 2);
    delete[] aa;
    A4K *b = new A4K;
    fill_check(b, 1, 3);
    delete b;
    A4K *ba = new A4K[3];
    fill_check(ba, 3, 4);
    delete[] ba;
    A1M *m = new A1M;
    fill_check(m, 1, 5);
    delete m;
    A1M *ma = new A1M[3];
    fill_check(ma, 3, 6);
    delete[] ma;
    // aligned nothrow
    A4K *nb = new (std::nothrow) A4K;
    fill_check(nb, 1, 7);
    delete nb;
    A1M *nm = new (std::nothrow) A1M[2];
    fill_check(nm, 2, 8);
    delete[] nm;
    // the operators themselves, every alignment from 32 to 1 MiB
    for (std::size_t al = 32; al <= MiB; al <<= 1) {
        std::align_val_t av{al};
        void *p = ::operator new(100, av);
        CHECK(p && aligned(p, al));
        std::memset(p, 9, 100);
        ::operator delete(p, av);
        p = ::operator new[](al + 1, av);
        CHECK(p && aligned(p, al));
        std::memset(p, 9, al + 1);
        ::operator delete[](p, al + 1, av); // sized aligned
        p = ::operator new(100, av, std::nothrow);
        CHECK(p && aligned(p, al));
        ::operator delete(p, av, std::nothrow);
        p = ::operator new[](100, av, std::nothrow);
        CHECK(p && aligned(p, al));
        ::operator delete[](p, av, std::nothrow);
        p = ::operator new(300, av);
        CHECK(p && aligned(p, al));
        ::operator delete(p, 1, std::align_val_t{16}); // wrong size and alignment: freed all the same
    }
    CHECK(live_blocks() == before);
}

void test_containers()
{
    std::map<int, std::string> m;
    for (int i = 0; i < 10000; i++) m[i] = std::string(static_cast<std::size_t>(i % 100), static_cast<char>('a' + i % 26));
    for (int i = 0; i < 10000; i++) CHECK(m[i].size() == static_cast<std::size_t>(i % 100));
    std::vector<std::vector<int>> vv(100);
    for (int i = 0; i < 100; i++)
        for (int k = 0; k < 1000; k++) vv[static_cast<std::size_t>(i)].push_back(i * k);
    for (int i = 0; i < 100; i++) CHECK(vv[static_cast<std::size_t>(i)][999] == i * 999);
}

int throwing_handler_calls;
void throwing_handler()
{
    ++throwing_handler_calls;
    throw std::bad_alloc();
}

void test_bad_alloc()
{
    volatile std::size_t huge = std::size_t(1) << 30; // far past limit=16M
    bool caught = false;
    try {
        char *p = new char[huge];
        escape(p);
        delete[] p;
    } catch (const std::bad_alloc &e) {
        caught = true;
        CHECK(e.what() != nullptr);
    }
    CHECK(caught);
    caught = false;
    try {
        int *p = new int[huge / sizeof(int)];
        escape(p);
        delete[] p;
    } catch (std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught);
    caught = false;
    try {
        A1M *p = new A1M[64]; // aligned, 64 MiB
        escape(p);
        delete[] p;
    } catch (const std::exception &) { // (caught as its base too)
        caught = true;
    }
    CHECK(caught);
    caught = false;
    try {
        void *p = ::operator new(huge, std::align_val_t{4096});
        escape(p);
        ::operator delete(p, std::align_val_t{4096});
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught);

    // the nothrow forms: nullptr, and the new-handler is not called
    throwing_handler_calls = 0;
    std::set_new_handler(throwing_handler);
    char *n = new (std::nothrow) char[huge];
    CHECK(n == nullptr);
    void *na = ::operator new(huge, std::align_val_t{64}, std::nothrow);
    CHECK(na == nullptr);
    A1M *nm = new (std::nothrow) A1M[64];
    CHECK(nm == nullptr);
    CHECK(throwing_handler_calls == 0);
    // ... while a throwing form calls it (and the handler's exception comes out)
    caught = false;
    try {
        char *p = new char[huge];
        escape(p);
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught);
    CHECK(throwing_handler_calls == 1);
    std::set_new_handler(nullptr);

    // and memory is served again afterwards
    char *ok = new char[MiB];
    std::memset(ok, 1, MiB);
    delete[] ok;
}

char *reserve;
int reserve_handler_calls;
void reserve_handler()
{
    ++reserve_handler_calls;
    delete[] reserve;
    reserve = nullptr;
    std::set_new_handler(nullptr);
}

void test_new_handler()
{
    reserve = new char[6 * MiB];
    std::memset(reserve, 0x44, 6 * MiB);
    std::set_new_handler(reserve_handler);
    CHECK(std::get_new_handler() == reserve_handler);
    std::vector<char *> blocks;
    blocks.reserve(64);
    int after_handler = 0;
    bool caught = false;
    try {
        for (int i = 0; i < 64; i++) {
            char *p = new char[MiB];
            std::memset(p, 0x45, MiB);
            blocks.push_back(p);
            if (reserve_handler_calls) after_handler++;
        }
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    std::fprintf(stderr, "new-handler: %zu blocks of 1 MiB, %d after the handler ran (%d calls)\n", blocks.size(),
                 after_handler, reserve_handler_calls);
    CHECK(caught);                      // the budget ran out in the end (the handler gone)
    CHECK(reserve_handler_calls == 1);  // the handler ran once, freed the reserve, uninstalled itself
    CHECK(reserve == nullptr);
    CHECK(std::get_new_handler() == nullptr);
    CHECK(after_handler >= 1);          // the request that called it was then served
    CHECK(blocks.size() >= 6);
    CHECK(blocks.size() <= 16);
    for (char *p : blocks) delete[] p;
    char *again = new char[4 * MiB];
    std::memset(again, 1, 4 * MiB);
    delete[] again;
}

} // namespace

int main()
{
    test_on_dropin();
    test_plain_and_array();
    test_nothrow();
    test_sized_delete();
    test_aligned();
    test_containers();
    test_bad_alloc();
    test_new_handler();
    std::printf("dropin_cxx: all checks passed\n");
    return 0;
}
