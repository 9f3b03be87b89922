/* Sorting: quicksort, merge sort, insertion sort, heap sort through a comparator. */
#include "guest.h"

#define N 600

static uint32_t seed = 1;
static uint32_t rnd(void) { seed = seed * 1664525u + 1013904223u; return seed; }

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void swap(int *a, int *b) { int t = *a; *a = *b; *b = t; }

static void quicksort(int *v, int lo, int hi)
{
    while (lo < hi) {
        int pivot = v[(lo + hi) / 2], i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) swap(&v[i++], &v[j--]);
        }
        if (j - lo < hi - i) { quicksort(v, lo, j); lo = i; }
        else { quicksort(v, i, hi); hi = j; }
    }
}

static int tmp[N];
static void merge_sort(int *v, int n)
{
    if (n < 2) return;
    int h = n / 2;
    merge_sort(v, h);
    merge_sort(v + h, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = v[i] <= v[j] ? v[i++] : v[j++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(int));
}

static void insertion_sort(short *v, int n)
{
    for (int i = 1; i < n; i++) {
        short x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) { v[j + 1] = v[j]; j--; }
        v[j + 1] = x;
    }
}

static void sift(int *v, int start, int end, int (*cmp)(const void *, const void *))
{
    int root = start;
    while (2 * root + 1 <= end) {
        int child = 2 * root + 1, top = root;
        if (cmp(&v[top], &v[child]) < 0) top = child;
        if (child + 1 <= end && cmp(&v[top], &v[child + 1]) < 0) top = child + 1;
        if (top == root) return;
        swap(&v[root], &v[top]);
        root = top;
    }
}

static void heap_sort(int *v, int n, int (*cmp)(const void *, const void *))
{
    for (int s = (n - 2) / 2; s >= 0; s--) sift(v, s, n - 1, cmp);
    for (int e = n - 1; e > 0; e--) { swap(&v[0], &v[e]); sift(v, 0, e - 1, cmp); }
}

static uint32_t digest(const int *v, int n)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 16777619u;
    return h;
}

static int sorted(const int *v, int n)
{
    for (int i = 1; i < n; i++) if (v[i - 1] > v[i]) return 0;
    return 1;
}

static int a[N], b[N], c[N];
static short s[N];

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    for (int i = 0; i < N; i++) {
        a[i] = (int)(rnd() >> 8) - (1 << 23);
        s[i] = (short)(rnd() >> 16);
    }
    memcpy(b, a, sizeof a);
    memcpy(c, a, sizeof a);
    quicksort(a, 0, N - 1);
    merge_sort(b, N);
    heap_sort(c, N, cmp_int);
    insertion_sort(s, N);
    printf("quick %d %08x min %d max %d\n", sorted(a, N), digest(a, N), a[0], a[N - 1]);
    printf("merge %d %08x\n", sorted(b, N), digest(b, N));
    printf("heap %d %08x\n", sorted(c, N), digest(c, N));
    int ok = 1;
    for (int i = 1; i < N; i++) ok &= s[i - 1] <= s[i];
    printf("shorts %d %d %d %d\n", ok, s[0], s[N / 2], s[N - 1]);
    return memcmp(a, b, sizeof a) || memcmp(a, c, sizeof a);
}
