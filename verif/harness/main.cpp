// Verilator main of the stand-alone harness: toggle the clock until $finish.
#include <memory>

#include "Vupe_harness.h"
#include "verilated.h"

int main(int argc, char** argv) {
    const std::unique_ptr<VerilatedContext> context{new VerilatedContext};
    context->commandArgs(argc, argv);
    const std::unique_ptr<Vupe_harness> top{new Vupe_harness{context.get(), "harness"}};
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
