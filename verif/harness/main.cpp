// Verilator main of the stand-alone harness: load the beat memories, toggle the clock until
// $finish.
//
// Under Verilator the harness leaves act.hex, wgt.hex, sched.hex, prm.hex and (with +wgt_bw)
// wbits.hex to this main: Verilator's `$readmemh` reads a character at a time and took about a
// sixth of a 262 144-cycle run. Each file is read in blocks and its words are written straight
// into the harness's public memories before the first evaluation, from address 0. The files
// are `$readmemh` files as `gen.pack` writes them, one hexadecimal word a line (any whitespace
// between words, `_` inside a word and `//` comments are taken too; an `@` address, `x` or `z`
// is refused). Bits above a memory's width are dropped, as `$readmemh` does. The widths come
// from -DUPE_ACT_BITS, -DUPE_WGT_BITS and -DUPE_PRM_BITS (verif/native.py).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "Vupe_harness.h"
#include "Vupe_harness___024root.h"
#include "verilated.h"

namespace {

[[noreturn]] void fail(const std::string& msg) {
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    std::exit(1);
}

// A file read in blocks, a character at a time; a missing file that is not `required` reads
// as empty.
class Reader {
  public:
    Reader(const char* path, bool required) : fh_{std::fopen(path, "rb")} {
        if (!fh_ && (required || errno != ENOENT))
            fail(std::string{"cannot open "} + path + ": " + std::strerror(errno));
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader() {
        if (fh_) std::fclose(fh_);
    }
    // The next character, or -1 at the end.
    int get() {
        if (at_ == len_) {
            if (!fh_) return -1;
            len_ = std::fread(buf_.data(), 1, buf_.size(), fh_);
            at_ = 0;
            if (len_ == 0) return -1;
        }
        return static_cast<unsigned char>(buf_[at_++]);
    }

  private:
    FILE* fh_;
    std::vector<char> buf_ = std::vector<char>(1 << 20);
    std::size_t at_ = 0, len_ = 0;
};

inline int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

inline bool is_space(int c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Word storage of one memory entry: 32-bit chunks, least significant first.
inline void put(IData& dst, const uint32_t* w) { dst = w[0]; }
inline void put(QData& dst, const uint32_t* w) {
    dst = static_cast<QData>(w[0]) | static_cast<QData>(w[1]) << 32;
}
template <std::size_t N>
inline void put(VlWide<N>& dst, const uint32_t* w) {
    for (std::size_t i = 0; i < N; ++i) dst[i] = w[i];
}

// Load a `$readmemh` file of `bits`-wide words into `mem` from address 0; return the words.
template <typename T, std::size_t Depth>
std::size_t load(const char* path, VlUnpacked<T, Depth>& mem, int bits, bool required = true) {
    Reader in{path, required};
    const int chunks = (bits + 31) / 32;
    std::vector<uint32_t> word(chunks + 2);
    const uint32_t top_mask = bits % 32 ? (1U << (bits % 32)) - 1 : ~0U;
    std::string token;
    std::size_t n = 0;
    int c = in.get();
    while (c >= 0) {
        if (is_space(c)) {
            c = in.get();
            continue;
        }
        token.clear();
        while (c >= 0 && !is_space(c)) {
            token.push_back(static_cast<char>(c));
            c = in.get();
        }
        if (token.compare(0, 2, "//") == 0) {
            while (c >= 0 && c != '\n') c = in.get();
            continue;
        }
        if (n == Depth)
            fail(std::string{path} + " holds more than the harness memory's " +
                 std::to_string(Depth) + " words");
        // Digits from the last one: four bits each, into the chunks from the bottom.
        std::fill(word.begin(), word.end(), 0U);
        int bit = 0;
        for (auto q = token.rbegin(); q != token.rend(); ++q) {
            if (*q == '_') continue;
            const int v = hex_value(*q);
            if (v < 0)
                fail(std::string{path} + ", word " + std::to_string(n) + ": '" + token +
                     "' is not a hexadecimal word");
            if (bit < chunks * 32) word[bit / 32] |= static_cast<uint32_t>(v) << (bit % 32);
            bit += 4;
        }
        word[chunks - 1] &= top_mask;
        put(mem[n], word.data());
        ++n;
    }
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    const std::unique_ptr<VerilatedContext> context{new VerilatedContext};
    context->commandArgs(argc, argv);
    const std::unique_ptr<Vupe_harness> top{new Vupe_harness{context.get(), "harness"}};
    // The harness is inlined into the root: its memories are the root's members.
    Vupe_harness___024root& root = *top->rootp;
    auto& act_mem = root.upe_harness__DOT__act_mem;
    auto& wgt_mem = root.upe_harness__DOT__wgt_mem;
    auto& sched_mem = root.upe_harness__DOT__sched_mem;
    auto& prm_mem = root.upe_harness__DOT__prm_mem;
    auto& wbits_mem = root.upe_harness__DOT__wbits_mem;
    load("act.hex", act_mem, UPE_ACT_BITS);
    const std::size_t wgt_words = load("wgt.hex", wgt_mem, UPE_WGT_BITS);
    if (load("sched.hex", sched_mem, 32) != wgt_words)
        fail("sched.hex must hold one word per wgt.hex word");
    load("prm.hex", prm_mem, UPE_PRM_BITS, false);  // needed with requant only
    const char* bw = context->commandArgsPlusMatch("wgt_bw=");
    if (bw[0] && std::atol(bw + 8) != 0 && load("wbits.hex", wbits_mem, 32) != wgt_words)
        fail("with +wgt_bw, wbits.hex must hold one word per wgt.hex word");
    top->clk = 0;
    top->eval();
    while (!context->gotFinish()) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        context->timeInc(1);
    }
    top->final();
    return 0;
}
