/* Recursion: Fibonacci, Ackermann, Towers of Hanoi, N-queens, permutations, flood fill. */
#include "guest.h"

static unsigned fib(unsigned n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static unsigned ackermann(unsigned m, unsigned n)
{
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

static unsigned moves;
static uint32_t hanoi_hash;
static void hanoi(int n, int from, int to, int via)
{
    if (!n) return;
    hanoi(n - 1, from, via, to);
    moves++;
    hanoi_hash = hanoi_hash * 31 + (uint32_t)(from * 3 + to);
    hanoi(n - 1, via, to, from);
}

static int queens(int row, int n, uint32_t cols, uint32_t d1, uint32_t d2)
{
    if (row == n) return 1;
    int count = 0;
    uint32_t free = ~(cols | d1 | d2) & ((1u << n) - 1);
    while (free) {
        uint32_t bit = free & -free;
        free ^= bit;
        count += queens(row + 1, n, cols | bit, (d1 | bit) << 1, (d2 | bit) >> 1);
    }
    return count;
}

static char perm[8];
static unsigned perm_count;
static uint32_t perm_hash;
static void permute(int k, int n)
{
    if (k == n) {
        perm_count++;
        for (int i = 0; i < n; i++) perm_hash = perm_hash * 7 + (uint32_t)perm[i];
        return;
    }
    for (int i = k; i < n; i++) {
        char t = perm[k]; perm[k] = perm[i]; perm[i] = t;
        permute(k + 1, n);
        t = perm[k]; perm[k] = perm[i]; perm[i] = t;
    }
}

static char grid[16][33] = {
    "................................",
    "..######........................",
    "..#....#.......#########........",
    "..#....#.......#.......#........",
    "..######.......#...#...#........",
    "...............#.......#........",
    "...............#########........",
    "................................",
};
static int fill(int r, int c)
{
    if (r < 0 || r >= 8 || c < 0 || c >= 32 || grid[r][c] != '.') return 0;
    grid[r][c] = 'o';
    return 1 + fill(r + 1, c) + fill(r - 1, c) + fill(r, c + 1) + fill(r, c - 1);
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    printf("fib %u %u\n", fib(10), fib(20));
    printf("ackermann %u %u\n", ackermann(2, 3), ackermann(2, 50));
    hanoi(12, 0, 2, 1);
    printf("hanoi %u %08x\n", moves, hanoi_hash);
    for (int n = 4; n <= 8; n++) printf("queens %d %d\n", n, queens(0, n, 0, 0, 0));
    for (int i = 0; i < 6; i++) perm[i] = (char)('a' + i);
    permute(0, 6);
    printf("permutations %u %08x\n", perm_count, perm_hash);
    printf("fill %d %d\n", fill(3, 4), fill(0, 0));
    printf("%s\n%s\n", grid[3], grid[0]);
    return 0;
}
