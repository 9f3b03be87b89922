/* A small interpreter: a stack bytecode VM (switch dispatch) and a recursive-descent
 * expression evaluator with variables. */
#include "guest.h"

enum { PUSH, LOAD, STORE, ADD, SUB, MUL, DIV, MOD, LT, JZ, JMP, PRINT, DUP, HALT };

static int32_t vars[8];
static int32_t stack[64];

static uint32_t run(const int32_t *code)
{
    int sp = 0;
    uint32_t steps = 0;
    for (int pc = 0;; steps++) {
        int32_t op = code[pc++], a, b;
        switch (op) {
        case PUSH: stack[sp++] = code[pc++]; break;
        case LOAD: stack[sp++] = vars[code[pc++]]; break;
        case STORE: vars[code[pc++]] = stack[--sp]; break;
        case ADD: b = stack[--sp]; a = stack[--sp]; stack[sp++] = a + b; break;
        case SUB: b = stack[--sp]; a = stack[--sp]; stack[sp++] = a - b; break;
        case MUL: b = stack[--sp]; a = stack[--sp]; stack[sp++] = a * b; break;
        case DIV: b = stack[--sp]; a = stack[--sp]; stack[sp++] = a / b; break;
        case MOD: b = stack[--sp]; a = stack[--sp]; stack[sp++] = a % b; break;
        case LT: b = stack[--sp]; a = stack[--sp]; stack[sp++] = a < b; break;
        case JZ: a = stack[--sp]; if (!a) pc = code[pc]; else pc++; break;
        case JMP: pc = code[pc]; break;
        case DUP: a = stack[sp - 1]; stack[sp++] = a; break;
        case PRINT: printf("vm %d\n", stack[--sp]); break;
        case HALT: return steps;
        default: printf("bad opcode %d\n", op); return steps;
        }
    }
}

static int32_t code[128];
static int emitted;
static int emit(int32_t word) { code[emitted] = word; return emitted++; }

/* Count the primes below 300 by trial division; print the count and the last prime. */
static void assemble_primes(void)
{
    emit(PUSH); emit(0); emit(STORE); emit(0);
    emit(PUSH); emit(2); emit(STORE); emit(1);
    int outer = emitted;
    emit(LOAD); emit(1); emit(PUSH); emit(300); emit(LT); emit(JZ); int to_end = emit(0);
    emit(PUSH); emit(2); emit(STORE); emit(2);
    int inner = emitted;
    emit(LOAD); emit(2); emit(DUP); emit(MUL); emit(LOAD); emit(1); emit(PUSH); emit(1); emit(ADD);
    emit(LT); emit(JZ); int to_prime = emit(0);
    emit(LOAD); emit(1); emit(LOAD); emit(2); emit(MOD); emit(JZ); int to_next = emit(0);
    emit(LOAD); emit(2); emit(PUSH); emit(1); emit(ADD); emit(STORE); emit(2); emit(JMP); emit(inner);
    code[to_prime] = emitted;
    emit(LOAD); emit(0); emit(PUSH); emit(1); emit(ADD); emit(STORE); emit(0);
    emit(LOAD); emit(1); emit(STORE); emit(3);
    code[to_next] = emitted;
    emit(LOAD); emit(1); emit(PUSH); emit(1); emit(ADD); emit(STORE); emit(1); emit(JMP); emit(outer);
    code[to_end] = emitted;
    emit(LOAD); emit(0); emit(PRINT); emit(LOAD); emit(3); emit(PRINT); emit(HALT);
}

static const char *src;
static int32_t expr(void);
static void skip(void) { while (*src == ' ') src++; }
static int32_t atom(void)
{
    skip();
    if (*src == '(') { src++; int32_t v = expr(); skip(); src++; return v; }
    if (*src == '-') { src++; return -atom(); }
    if (*src >= 'a' && *src <= 'h') return vars[*src++ - 'a'];
    int32_t v = 0;
    while (*src >= '0' && *src <= '9') v = v * 10 + (*src++ - '0');
    return v;
}
static int32_t term(void)
{
    int32_t v = atom();
    for (;;) {
        skip();
        if (*src == '*') { src++; v *= atom(); }
        else if (*src == '/') { src++; int32_t d = atom(); v = d ? v / d : 0; }
        else if (*src == '%') { src++; int32_t d = atom(); v = d ? v % d : 0; }
        else return v;
    }
}
static int32_t expr(void)
{
    int32_t v = term();
    for (;;) {
        skip();
        if (*src == '+') { src++; v += term(); }
        else if (*src == '-') { src++; v -= term(); }
        else return v;
    }
}

int main(uint32_t magic, const struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    assemble_primes();
    uint32_t steps = run(code);
    printf("steps %u\n", steps);
    static const char *exprs[] = {
        "1 + 2 * 3", "(1 + 2) * 3", "100 / 7 % 5", "-(4 - 10) * a", "a * b - c / (d + 1)",
        "((((1))))+((2))*-3", "2147483647 + 1 - 1",
    };
    vars[0] = 6; vars[1] = -7; vars[2] = 100; vars[3] = 3;
    for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
        src = exprs[i];
        printf("%s = %d\n", exprs[i], expr());
    }
    return 0;
}
