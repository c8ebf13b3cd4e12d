// Stand-alone harness of the unified compression PE array core: a plain-Verilog example of
// driving it, and the native simulation path of the verification flow.
//
// The beats come from `$readmemh` files in the working directory, written by
// `python -m gen pack` (see its index.json); one or more GEMMs run one after the other.
// Under Verilator only header.hex goes through `$readmemh`: main.cpp reads the other files
// into the memories before the first evaluation (`$readmemh` would dominate short runs).
//   header.hex  the number of GEMMs, then 10 words per GEMM: mode word, k_beats, m_tiles,
//               n_tiles, requant, the GEMM's first word in act.hex, wgt.hex (and sched.hex),
//               prm.hex, the beats it streams and its words in wgt.hex
//   act.hex     activation beats of every row tile:  m_tiles x k_beats words per GEMM
//   wgt.hex     weight beats of every column tile: k_beats each, fewer with block sparsity
//   sched.hex   one word per wgt.hex word: the beat's index within the tile (bits 30:0) and
//               the tile's last beat (bit 31)
//   prm.hex     requant parameters of every column tile (requant only): n_tiles words
//   wbits.hex   with +wgt_bw only: one word per wgt.hex word, the beat's compressed size in
//               bits (written by the host, `verif.native.write_wgt_bits`)
// Tiles stream column tile by column tile, the row tiles inside (tile t = nt * m_tiles + mt):
// a tile replays its column tile's wgt.hex words in order, and for each the act.hex word
// (tile's row tile) * k_beats + (its sched.hex beat index).
//
// Every stream is throttled by its own 16-bit Galois LFSR (polynomial x^16+x^14+x^13+x^11+1):
// a source that is not presenting a beat draws one LFSR step and presents when the low byte of
// the state is below its duty (0..256, 256 = always); the result sink draws every cycle and is
// ready on the same rule. A presented beat stays valid until taken. Every GEMM starts from
// the seeds again. Plusargs (all optional):
//   +act_seed= +wgt_seed= +prm_seed= +res_seed=   LFSR seeds (1..65535; 0 counts as 1)
//   +act_duty= +wgt_duty= +prm_duty= +res_duty=   duties (default 256)
//   +max_idle=N   give up after N cycles without a transfer (default 100000)
//   +wgt_bw=W     weight bandwidth of W bits per cycle: a credit counter earns W bits every
//                 cycle (saturating at W plus the largest beat of wbits.hex: a one-beat
//                 buffer, so a stalled core banks no burst) and a weight beat is valid only
//                 while the counter holds its size; taking the beat spends it. The counter starts empty with every GEMM (sequential runs).
//                 Without it (or W = 0) no throttle.
//   +inband=1     in-band modes: every GEMM's mode word goes to the core's `dsc` stream and
//                 the GEMMs stream back to back (the next GEMM's beats follow the last beat
//                 of the previous one, whose weight beat carries ctl.gemm_last); without it
//                 a GEMM starts when the previous one's last result row is taken
// Output, result.txt: per GEMM one result beat a line (hex), then
//   "cycles C first F last L" (C = L - F + 1, from the first beat taken to the last result row)
// or a line starting with "error".
//
// Widths and memory depths come from macros (-D), the core's module name from UPE_CORE.

module upe_harness (
    input wire clk
);
    parameter ACT_BITS  = `UPE_ACT_BITS;
    parameter WGT_BITS  = `UPE_WGT_BITS;
    parameter PRM_BITS  = `UPE_PRM_BITS;
    parameter RES_BITS  = `UPE_RES_BITS;
    parameter MODE_BITS = `UPE_MODE_BITS;
    parameter ACT_DEPTH = `UPE_ACT_DEPTH;
    parameter WGT_DEPTH = `UPE_WGT_DEPTH;
    parameter PRM_DEPTH = `UPE_PRM_DEPTH;
    parameter MAX_GEMMS = `UPE_MAX_GEMMS;

    // Public: under Verilator, main.cpp fills these five before the first evaluation, and
    // nothing writes them after it. Read-only for Verilator: logic that reads a writable
    // public variable is evaluated again on every evaluation (twice a cycle, 4 % of a run).
    reg [ACT_BITS-1:0] act_mem [0:ACT_DEPTH-1] /*verilator public_flat_rd*/;
    reg [WGT_BITS-1:0] wgt_mem [0:WGT_DEPTH-1] /*verilator public_flat_rd*/;
    reg [PRM_BITS-1:0] prm_mem [0:PRM_DEPTH-1] /*verilator public_flat_rd*/;
    reg [31:0]         sched_mem [0:WGT_DEPTH-1] /*verilator public_flat_rd*/;
    reg [31:0]         wbits_mem [0:WGT_DEPTH-1] /*verilator public_flat_rd*/;
    reg [63:0]         header  [0:10*MAX_GEMMS];

    // ---- the current GEMM --------------------------------------------------------------
    reg  [31:0] n_gemms;
    reg  [31:0] gemm = 0;
    reg         inband = 0;
    reg  [31:0] pg = 0;          // the GEMM of the prm stream
    reg  [31:0] rg = 0;          // the GEMM of the result rows
    reg  [31:0] dg = 0;          // the next descriptor (in-band)
    reg  [31:0] first_at [0:MAX_GEMMS-1];
    wire [31:0] h = 1 + 10 * gemm;
    wire [31:0] hp = 1 + 10 * pg;
    wire [31:0] hr = 1 + 10 * rg;
    wire [MODE_BITS-1:0] mode = inband ? {{(MODE_BITS-1){1'b0}}, 1'b1} << `UPE_MODE_INBAND_BIT
                                       : header[h][MODE_BITS-1:0];
    wire [31:0] k_beats = header[h + 1][31:0];
    wire [31:0] m_tiles = header[h + 2][31:0];
    wire [31:0] n_tiles = header[h + 3][31:0];
    wire        requant = header[h + 4][0];
    wire [31:0] act_off = header[h + 5][31:0];
    wire [31:0] wgt_off = header[h + 6][31:0];
    wire [31:0] prm_off = header[h + 7][31:0];
    wire [31:0] n_act = header[h + 8][31:0];
    wire [31:0] m_tiles_p = header[hp + 2][31:0];
    wire [31:0] n_prm = header[hp + 4][0] ? m_tiles_p * header[hp + 3][31:0] : 0;
    wire [31:0] n_res = header[hr + 2][31:0] * header[hr + 3][31:0] * `UPE_ROWS;
    reg [8:0]  act_duty, wgt_duty, prm_duty, res_duty;
    reg [15:0] act_lfsr, wgt_lfsr, prm_lfsr, res_lfsr;
    reg [15:0] act_seed, wgt_seed, prm_seed, res_seed;
    reg [31:0] max_idle;
    reg [31:0] wgt_bw = 0;       // weight bandwidth (bits per cycle); 0: no throttle
    reg [31:0] wgt_cap = 0;      // the largest beat (the credit saturates at wgt_cap + W)
    reg [31:0] wgt_credit = 0;   // bits the weight link holds
    integer    fd, value;

    // ---- the core ------------------------------------------------------------------------
    reg  [2:0] rst_count = 3'd4;
    wire       rst = rst_count != 3'd0;
    wire       running = !rst;
    wire [ACT_BITS-1:0] act_payload;
    wire [WGT_BITS-1:0] wgt_payload;
    wire [PRM_BITS-1:0] prm_payload;
    wire [RES_BITS-1:0] res_payload;
    wire act_valid, wgt_valid, prm_valid, res_ready;
    wire act_ready, wgt_ready, prm_ready, res_valid, busy;
    wire dsc_valid = running && inband && dg < n_gemms;
    wire dsc_ready;
    wire [MODE_BITS-1:0] dsc_payload = header[1 + 10 * dg][MODE_BITS-1:0];

    `UPE_CORE core (
        .clk(clk), .rst(rst), .mode(mode),
        .dsc__payload(dsc_payload), .dsc__valid(dsc_valid), .dsc__ready(dsc_ready),
        .act__payload(act_payload), .act__valid(act_valid), .act__ready(act_ready),
        .wgt__payload(wgt_payload), .wgt__valid(wgt_valid), .wgt__ready(wgt_ready),
        .prm__payload(prm_payload), .prm__valid(prm_valid), .prm__ready(prm_ready),
        .res__payload(res_payload), .res__valid(res_valid), .res__ready(res_ready),
        .busy(busy)
    );

    // ---- stimulus: act and wgt share the beat counters (taken together) --------------------
    reg [31:0] taken = 0;        // beats taken
    reg [31:0] mt = 0;           // row tile of the current tile
    reg [31:0] act_base = 0;     // act_off + mt * k_beats
    reg [31:0] wgt_base = 0;     // first wgt.hex word of the current column tile
    reg [31:0] wgt_at = 0;       // wgt.hex (and sched.hex) word of the current beat
    wire [31:0] sched_word = sched_mem[wgt_at];
    wire       tile_end = sched_word[31];
    reg        act_on = 0, wgt_on = 0;   // presenting a beat (held until taken)
    wire       beats_done = taken == n_act;
    wire       act_gate = {1'b0, act_lfsr[7:0]} < act_duty;
    wire       wgt_gate = {1'b0, wgt_lfsr[7:0]} < wgt_duty;
    wire [31:0] beat_bits = wbits_mem[wgt_at];
    wire       wgt_bw_ok = wgt_bw == 0 || wgt_credit >= beat_bits;
    assign act_valid = running && !beats_done && (act_on || act_gate);
    assign wgt_valid = running && !beats_done && (wgt_on || wgt_gate) && wgt_bw_ok;
    assign act_payload = act_mem[act_base + {1'b0, sched_word[30:0]}];
    // The GEMM's last beat closes its descriptor (read by the core only in-band).
    wire [WGT_BITS-1:0] gemm_last_bit = {{(WGT_BITS-1){1'b0}}, 1'b1} << `UPE_WGT_GEMM_LAST_BIT;
    assign wgt_payload = wgt_mem[wgt_at] | (taken + 1 == n_act ? gemm_last_bit : 0);
    wire take = act_valid && wgt_valid && act_ready;
    wire [31:0] credit_sum = wgt_credit + wgt_bw - (take ? beat_bits : 32'd0);

    reg [31:0] prm_taken = 0;
    reg [31:0] prm_m = 0;        // row tile of the tile this parameter beat belongs to
    reg [31:0] prm_n = 0;        // its column tile (the word read)
    reg        prm_on = 0;
    wire       prm_done = prm_taken == n_prm;
    wire       prm_gate = {1'b0, prm_lfsr[7:0]} < prm_duty;
    assign prm_valid = running && !prm_done && (prm_on || prm_gate);
    assign prm_payload = prm_mem[prm_n];
    wire prm_take = prm_valid && prm_ready;

    assign res_ready = running && ({1'b0, res_lfsr[7:0]} < res_duty);
    wire res_take = res_valid && res_ready;

    function [15:0] lfsr_next(input [15:0] s);
        lfsr_next = s[0] ? ((s >> 1) ^ 16'hB400) : (s >> 1);
    endfunction

    // ---- bookkeeping ----------------------------------------------------------------------
    reg [31:0] cycle = 0, first = 0, last = 0, results = 0, idle = 0;
    reg        started = 0;

    reg [31:0] act_words, wgt_words, prm_words;
    integer    g;

    initial begin
        $readmemh("header.hex", header);
        n_gemms = header[0][31:0];
        act_words = 0; wgt_words = 0; prm_words = 0;
        for (g = 0; g < n_gemms; g = g + 1) begin
            act_words = act_words + header[3 + 10 * g][31:0] * header[2 + 10 * g][31:0];
            wgt_words = wgt_words + header[10 + 10 * g][31:0];
            if (header[5 + 10 * g][0])
                prm_words = prm_words + header[4 + 10 * g][31:0];
        end
`ifndef VERILATOR
        $readmemh("act.hex", act_mem, 0, act_words - 1);
        $readmemh("wgt.hex", wgt_mem, 0, wgt_words - 1);
        $readmemh("sched.hex", sched_mem, 0, wgt_words - 1);
        if (prm_words != 0)
            $readmemh("prm.hex", prm_mem, 0, prm_words - 1);
`endif
        act_seed = 16'd1; wgt_seed = 16'd1; prm_seed = 16'd1; res_seed = 16'd1;
        act_duty = 9'd256; wgt_duty = 9'd256; prm_duty = 9'd256; res_duty = 9'd256;
        if ($value$plusargs("act_seed=%d", value) && value % 65536 != 0) act_seed = value[15:0];
        if ($value$plusargs("wgt_seed=%d", value) && value % 65536 != 0) wgt_seed = value[15:0];
        if ($value$plusargs("prm_seed=%d", value) && value % 65536 != 0) prm_seed = value[15:0];
        if ($value$plusargs("res_seed=%d", value) && value % 65536 != 0) res_seed = value[15:0];
        act_lfsr = act_seed; wgt_lfsr = wgt_seed; prm_lfsr = prm_seed; res_lfsr = res_seed;
        if ($value$plusargs("act_duty=%d", value)) act_duty = value[8:0];
        if ($value$plusargs("wgt_duty=%d", value)) wgt_duty = value[8:0];
        if ($value$plusargs("prm_duty=%d", value)) prm_duty = value[8:0];
        if ($value$plusargs("res_duty=%d", value)) res_duty = value[8:0];
        max_idle = 100000;
        if ($value$plusargs("max_idle=%d", value)) max_idle = value;
        if ($value$plusargs("inband=%d", value)) inband = value != 0;
        if ($value$plusargs("wgt_bw=%d", value)) wgt_bw = value;
        if (wgt_bw != 0) begin
`ifndef VERILATOR
            $readmemh("wbits.hex", wbits_mem, 0, wgt_words - 1);
`endif
            for (g = 0; g < wgt_words; g = g + 1)
                if (wbits_mem[g] > wgt_cap) wgt_cap = wbits_mem[g];
        end
        fd = $fopen("result.txt", "w");
        if (n_gemms == 0 || n_gemms > MAX_GEMMS) begin
            $fwrite(fd, "error: header.hex lists %0d GEMMs (1..%0d)\n", n_gemms, MAX_GEMMS);
            $fclose(fd);
            $finish;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            rst_count <= rst_count - 3'd1;
            act_base <= act_off;
            wgt_base <= wgt_off;
            wgt_at <= wgt_off;
            prm_n <= prm_off;
        end else begin
            cycle <= cycle + 1;
            // Sources: a draw of the gate whenever not presenting; held until taken.
            if (!act_on && !beats_done) act_lfsr <= lfsr_next(act_lfsr);
            if (!wgt_on && !beats_done) wgt_lfsr <= lfsr_next(wgt_lfsr);
            if (!prm_on && !prm_done) prm_lfsr <= lfsr_next(prm_lfsr);
            res_lfsr <= lfsr_next(res_lfsr);
            if (wgt_bw != 0)
                wgt_credit <= credit_sum > wgt_cap + wgt_bw ? wgt_cap + wgt_bw : credit_sum;
            act_on <= act_valid && !take;
            wgt_on <= wgt_valid && !take;
            prm_on <= prm_valid && !prm_take;
            if (dsc_valid && dsc_ready) dg <= dg + 1;
            // In-band: the prm stream moves on to the next GEMM once this one's are taken.
            if (inband && prm_done && !prm_take && pg + 1 < n_gemms) begin
                pg <= pg + 1;
                prm_taken <= 0; prm_m <= 0; prm_on <= 0;
                prm_n <= header[hp + 10 + 7][31:0];
            end
            if (take) begin
                if (!started) begin
                    started <= 1;
                    first <= cycle + 1;
                    first_at[gemm] <= cycle + 1;
                end
                taken <= taken + 1;
                if (inband && taken + 1 == n_act && gemm + 1 < n_gemms) begin
                    // In-band: the next GEMM's beats follow at once.
                    gemm <= gemm + 1;
                    act_base <= header[h + 10 + 5][31:0];
                    wgt_base <= header[h + 10 + 6][31:0];
                    wgt_at <= header[h + 10 + 6][31:0];
                    taken <= 0; mt <= 0; started <= 0;
                end else if (tile_end) begin
                    if (mt == m_tiles - 1) begin
                        mt <= 0;
                        act_base <= act_off;
                        wgt_base <= wgt_at + 1;
                        wgt_at <= wgt_at + 1;
                    end else begin
                        mt <= mt + 1;
                        act_base <= act_base + k_beats;
                        wgt_at <= wgt_base;
                    end
                end else begin
                    wgt_at <= wgt_at + 1;
                end
            end
            if (prm_take) begin
                prm_taken <= prm_taken + 1;
                if (prm_m == m_tiles_p - 1) begin
                    prm_m <= 0;
                    prm_n <= prm_n + 1;
                end else begin
                    prm_m <= prm_m + 1;
                end
            end
            idle <= (take || res_take) ? 0 : idle + 1;
            if (res_valid !== 1'b0 && res_valid !== 1'b1) begin
                $fwrite(fd, "error: res__valid is %b at cycle %0d\n", res_valid, cycle);
                $fclose(fd);
                $finish;
            end
            if (res_take) begin
                $fwrite(fd, "%h\n", res_payload);
                results <= results + 1;
                last <= cycle + 1;
                if (results + 1 == n_res) begin
                    $fwrite(fd, "cycles %0d first %0d last %0d\n", cycle + 1 - first_at[rg] + 1,
                            first_at[rg], cycle + 1);
                    if (rg + 1 == n_gemms) begin
                        $fclose(fd);
                        $finish;
                    end
                    rg <= rg + 1;
                    results <= 0;
                end
                if (results + 1 == n_res && !inband) begin
                    // The next GEMM: counters from its first words, traffic from the seeds.
                    gemm <= gemm + 1;
                    pg <= pg + 1;
                    act_base <= header[h + 10 + 5][31:0];
                    wgt_base <= header[h + 10 + 6][31:0];
                    wgt_at <= header[h + 10 + 6][31:0];
                    prm_n <= header[h + 10 + 7][31:0];
                    taken <= 0; mt <= 0; prm_taken <= 0; prm_m <= 0;
                    results <= 0; started <= 0;
                    act_on <= 0; wgt_on <= 0; prm_on <= 0;
                    act_lfsr <= act_seed; wgt_lfsr <= wgt_seed; prm_lfsr <= prm_seed;
                    res_lfsr <= res_seed;
                    wgt_credit <= 0;
                end
            end
            if (idle > max_idle) begin
                $fwrite(fd, "error: no transfer for %0d cycles: %0d/%0d beats taken, %0d/%0d %s\n",
                        idle, taken, n_act, results, n_res, "result rows");
                $fclose(fd);
                $finish;
            end
        end
    end
endmodule

`ifndef VERILATOR
// Clock for event-driven simulators (Verilator's C++ main toggles clk itself).
module upe_harness_tb;
    reg clk = 0;
    always #5 clk = !clk;
    upe_harness harness (.clk(clk));
endmodule
`endif
