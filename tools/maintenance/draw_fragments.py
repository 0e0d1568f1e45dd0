#!/usr/bin/env python3
"""Draw the register fragments of the tensor-core instruction mma.sync.aligned.m16n8k16 (bf16).

The picture shows, for one warp, which lane (T0..T31) and which 32-bit register holds each element
of the three tiles of D = A * B + C:

  A  16 x 16, row-major, bf16: registers a0..a3, two bf16 per register (neighbouring columns)
  B  16 x 8, "col" (column-major), bf16: registers b0, b1, two bf16 per register (neighbouring rows)
  C  16 x 8, fp32 (the accumulator, and D, which has the same layout): registers c0..c3, one each

With g = lane / 4 (the groupID) and t = lane % 4 (the threadID_in_group), the PTX ISA defines:

  a0: row g,     cols 2t, 2t+1        a1: row g + 8, cols 2t, 2t+1
  a2: row g,     cols 2t+8, 2t+9      a3: row g + 8, cols 2t+8, 2t+9
  b0: rows 2t, 2t+1,   col g          b1: rows 2t+8, 2t+9, col g
  c0, c1: row g,     cols 2t, 2t+1    c2, c3: row g + 8, cols 2t, 2t+1

(The PTX ISA numbers the eight bf16 *elements* of A a0..a7; this figure and lesson 03 number the
four 32-bit *registers* a0..a3. Register a0 holds elements a0, a1, and so on.) In a packed
register the element with the lower column (A) or row (B) index sits in the low 16 bits.

Used by lessons/03_flash_attention/README.md. Run from the repository root:

    /usr/bin/python3 tools/maintenance/draw_fragments.py --out figures/mma_m16n8k16_fragments.png

Needs matplotlib only (no GPU, no build).
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

# ---------------------------------------------------------------- the layouts


def a_fragment(lane, reg):
    """(row, col) of the two bf16 elements of register a<reg> of `lane` (A is 16 x 16)."""
    g, t = lane // 4, lane % 4
    row = g + 8 * (reg % 2)
    col = 2 * t + 8 * (reg // 2)
    return [(row, col), (row, col + 1)]


def b_fragment(lane, reg):
    """(row k, col n) of the two bf16 elements of register b<reg> of `lane` (B is 16 x 8)."""
    g, t = lane // 4, lane % 4
    row = 2 * t + 8 * reg
    return [(row, g), (row + 1, g)]


def c_fragment(lane, reg):
    """(row, col) of the fp32 element in register c<reg> of `lane` (C and D are 16 x 8)."""
    g, t = lane // 4, lane % 4
    return [(g + 8 * (reg // 2), 2 * t + reg % 2)]


def owners(fragment, regs, rows, cols):
    """Map every element of a rows x cols tile to (lane, reg); check each is held exactly once."""
    table = {}
    for lane in range(32):
        for reg in range(regs):
            for rc in fragment(lane, reg):
                assert rc not in table, f"element {rc} held twice"
                table[rc] = (lane, reg)
    assert len(table) == rows * cols, "some elements are held by no lane"
    return table


# ---------------------------------------------------------------- drawing

# one light colour per register index; the registers of one tile never share a colour
REG_COLOURS = ["#9ecae1", "#fdae6b", "#a1d99b", "#cbc0e6"]
HIGHLIGHT = "#c0392b"  # lane 0's elements get a thick outline in every tile


def draw_tile(ax, x0, title, subtitle, rows, cols, table, prefix, pair, row_label, col_label):
    """Draw one tile with its top-left corner at (x0, 0); y grows downwards.
    pair: 'h' when a register holds two horizontal neighbours, 'v' for vertical, None for one."""
    for (r, c), (lane, reg) in table.items():
        ax.add_patch(Rectangle((x0 + c, r), 1, 1, facecolor=REG_COLOURS[reg], edgecolor="none"))
    # one outline and one label per register (a pair of cells, or a single cell)
    seen = set()
    for (r, c), (lane, reg) in sorted(table.items()):
        if (lane, reg) in seen:
            continue
        seen.add((lane, reg))
        w, h = (2, 1) if pair == "h" else (1, 2) if pair == "v" else (1, 1)
        hi = lane == 0
        ax.add_patch(Rectangle((x0 + c, r), w, h, fill=False, edgecolor=HIGHLIGHT if hi else "#4d4d4d",
                               lw=2.6 if hi else 0.9, zorder=3 if hi else 2))
        text = f"T{lane} {prefix}{reg}" if pair == "h" else f"T{lane}\n{prefix}{reg}"
        ax.text(x0 + c + w / 2, r + h / 2, text, ha="center", va="center", fontsize=8.2,
                fontweight="bold" if hi else "normal", color="#1a1a1a", zorder=4, linespacing=1.05)
    # indices along the edges
    for r in range(rows):
        ax.text(x0 - 0.25, r + 0.5, str(r), ha="right", va="center", fontsize=8.5, color="#444444")
    for c in range(cols):
        ax.text(x0 + c + 0.5, -0.2, str(c), ha="center", va="bottom", fontsize=8.5, color="#444444")
    ax.text(x0 - 1.3, rows / 2, row_label, ha="center", va="center", rotation=90, fontsize=10, color="#444444")
    ax.text(x0 + cols / 2, -1.05, col_label, ha="center", va="bottom", fontsize=10, color="#444444")
    ax.text(x0 + cols / 2, -2.95, title, ha="center", va="bottom", fontsize=13, fontweight="bold")
    ax.text(x0 + cols / 2, -2.05, subtitle, ha="center", va="bottom", fontsize=9.5, color="#333333")
    ax.add_patch(Rectangle((x0, 0), cols, rows, fill=False, edgecolor="black", lw=1.6, zorder=5))
    # the k = 8 and row = 8 halves, where the register index changes
    if cols == 16:
        ax.plot([x0 + 8, x0 + 8], [0, rows], color="black", lw=1.3, zorder=5)
    ax.plot([x0, x0 + cols], [8, 8], color="black", lw=1.3, zorder=5)


def legend(ax, x0, y0, prefix, n):
    for reg in range(n):
        ax.add_patch(Rectangle((x0 + reg * 2.2, y0), 0.7, 0.7, facecolor=REG_COLOURS[reg], edgecolor="#4d4d4d"))
        ax.text(x0 + reg * 2.2 + 0.9, y0 + 0.35, f"{prefix}{reg}", va="center", fontsize=9.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="figures/mma_m16n8k16_fragments.png", help="PNG to write")
    ap.add_argument("--dpi", type=int, default=120, help="dots per inch (15 in wide: 1800 px at 120)")
    args = ap.parse_args()

    a = owners(a_fragment, 4, 16, 16)
    b = owners(b_fragment, 2, 16, 8)
    c = owners(c_fragment, 4, 16, 8)

    fig = plt.figure(figsize=(15, 9.25))
    ax = fig.add_axes([0.01, 0.0, 0.98, 0.935])
    xa, xb, xc = 2.0, 23.0, 35.5
    draw_tile(ax, xa, "A  (16 x 16, row-major, bf16)", "4 registers a0..a3 per lane, 2 bf16 each", 16, 16, a, "a",
              "h", "row m", "column k")
    draw_tile(ax, xb, "B  (16 x 8, col, bf16)", "b0, b1 per lane, 2 bf16 each", 16, 8, b, "b", "v", "row k",
              "column n")
    draw_tile(ax, xc, "C / D  (16 x 8, fp32)", "c0..c3 per lane, 1 float each", 16, 8, c, "c", None, "row m",
              "column n")
    ax.text(xa + 18.4, 8, "x", ha="center", va="center", fontsize=22)
    ax.text(xb + 9.9, 8, "+=", ha="center", va="center", fontsize=20)
    legend(ax, xa, 16.7, "a", 4)
    legend(ax, xb, 16.7, "b", 2)
    legend(ax, xc, 16.7, "c", 4)

    caption = (
        "lane = 4 g + t  (g = lane / 4 is the groupID: the row, or for B the column;  t = lane % 4 picks the pair "
        "of columns 2t, 2t+1, or for B of rows).\n"
        "A:  a0 = (g, 2t..2t+1)    a1 = (g+8, 2t..2t+1)    a2 = (g, 2t+8..2t+9)    a3 = (g+8, 2t+8..2t+9)"
        "            B:  b0 = (2t..2t+1, g)    b1 = (2t+8..2t+9, g)\n"
        "C / D:  c0 = (g, 2t)    c1 = (g, 2t+1)    c2 = (g+8, 2t)    c3 = (g+8, 2t+1)          "
        "(row, column) pairs; 2t..2t+1 means the two neighbours 2t and 2t+1.\n"
        "A packed register holds the lower column (A) or row (B) in its low 16 bits. Lane 0's elements are outlined "
        "in red.\n"
        "Flash attention: C of two neighbouring n8 tiles (columns 0-7 and 8-15), rounded to bf16 in pairs, has "
        "exactly the layout of A: c0c1 -> a0, c2c3 -> a1 of the first tile, a2, a3 of the second."
    )
    ax.text(0.3, 18.2, caption, ha="left", va="top", fontsize=10.2, linespacing=1.6, color="#222222")

    ax.set_xlim(-0.2, 43.7)
    ax.set_ylim(22.2, -3.6)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.suptitle("Register fragments of mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (one warp, 32 lanes)",
                 fontsize=15, fontweight="bold", y=0.985)
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi, facecolor="white")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
