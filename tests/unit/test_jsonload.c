/*
 * test_jsonload.c - unit tests for the request decoder
 * (workers/protocol/jsonload.c, contract in mc_protocol.h: mc_json_load),
 * differential against json_loadb(JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY): on a corpus of tricky texts and on a few hundred
 * thousand seeded mutations of MCP messages, both accept with the same tree
 * (same types, values, member order) or both refuse.  Also: a refusal
 * carries a sentence and an offset within the text; running out of memory
 * at any allocation gives NULL and leaks nothing.  mc_utf8_valid takes
 * exactly the byte sequences json_stringn takes.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_protocol.h"

#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* ---- comparing ------------------------------------------------------------- */

/* Stricter than json_equal: integer and real apart, reals bit for bit
 * (-0.0 is not 0.0), members in the same order. */
static bool same_tree(const json_t *a, const json_t *b)
{
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_OBJECT: {
		void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);

		if (json_object_size(a) != json_object_size(b))
			return false;
		for (; ia != NULL && ib != NULL;
		    ia = json_object_iter_next((json_t *)a, ia), ib = json_object_iter_next((json_t *)b, ib)) {
			size_t n = json_object_iter_key_len(ia);

			if (n != json_object_iter_key_len(ib) ||
			    memcmp(json_object_iter_key(ia), json_object_iter_key(ib), n) != 0 ||
			    !same_tree(json_object_iter_value(ia), json_object_iter_value(ib)))
				return false;
		}
		return ia == NULL && ib == NULL;
	}
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!same_tree(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		    memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_INTEGER:
		return json_integer_value(a) == json_integer_value(b);
	case JSON_REAL: {
		double x = json_real_value(a), y = json_real_value(b);

		return memcmp(&x, &y, sizeof(x)) == 0;
	}
	default:
		return true;
	}
}

/* The text, printable, for failure messages (the first 200 bytes). */
static const char *shown(const char *buf, size_t len)
{
	static char out[1024];
	size_t o = 0;

	for (size_t i = 0; i < len && i < 200 && o + 5 < sizeof(out); i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c >= 0x20 && c < 0x7F && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

/* json_loadb and mc_json_load agree on buf[len]; returns whether they accepted. */
static bool agree(const char *buf, size_t len)
{
	json_error_t je, me;
	json_t *want = json_loadb(buf, len, FLAGS, &je);
	json_t *got = mc_json_load(buf, len, &me);
	bool ok;

	if (want == NULL) {
		cr_assert_null(got, "jansson refuses (%s at %d), mc_json_load accepts: \"%s\"",
		    je.text, je.position, shown(buf, len));
		cr_assert(me.text[0] != '\0', "a refusal without a sentence: \"%s\"", shown(buf, len));
		cr_assert(me.position >= 0 && (size_t)me.position <= len,
		    "position %d outside [0, %zu]: \"%s\"", me.position, len, shown(buf, len));
		return false;
	}
	cr_assert_not_null(got, "jansson accepts, mc_json_load refuses (%s at %d): \"%s\"",
	    me.text, me.position, shown(buf, len));
	ok = same_tree(want, got);
	json_decref(want);
	json_decref(got);
	cr_assert(ok, "trees differ: \"%s\"", shown(buf, len));
	return true;
}

/* ---- the corpus ------------------------------------------------------------ */

struct text {
	const char *s;
	size_t len;
	bool accept;            /* what jansson 2.14 does (the test is differential anyway) */
};

#define YES(lit) { lit, sizeof(lit) - 1, true }
#define NO(lit)  { lit, sizeof(lit) - 1, false }

static const struct text corpus[] = {
	/* every value at the top (JSON_DECODE_ANY) */
	YES("null"), YES("true"), YES("false"), YES("0"), YES("\"\""), YES("{}"), YES("[]"),
	YES(" \t\r\n{ \"a\" : [ 1 , 2 ] }\n"),
	NO("nul"), NO("tru"), NO("fals"), NO("True"), NO("NULL"), NO("truex"), NO("[true false]"),
	/* empty, blank, trailing, several values, comments */
	NO(""), NO(" "), NO("\n\t\r "), NO("1 2"), NO("{} {}"), NO("[] x"), NO("\"a\"\"b\""),
	NO("/* c */ 1"), NO("1 // c"), NO("[1 /* c */]"), NO("# c\n1"),
	/* an unterminated string after the value (yajl's lexer waits for more) */
	NO("{} \""), NO("1 \"abc"), NO("[]\"\\u12"), NO("\"a\" \"b"), NO("null\n\"\\"),
	/* whitespace JSON does not have: \v and \f (yajl skips both), other controls */
	NO("\v1"), NO("1\v"), NO("[1,\f2]"), NO("\f"), NO("\x01"), NO("[1\x1f]"), NO("\x7f"),
	YES("[\"\x7f\"]"),
	/* structure */
	NO("[1,]"), NO("{\"a\":1,}"), NO("[,1]"), NO("{,}"), NO("[1 2]"), NO("{\"a\" 1}"),
	NO("{\"a\"}"), NO("{a:1}"), NO("{'a':1}"), NO("'a'"), NO("[1}"), NO("{\"a\":1]"),
	NO("["), NO("{"), NO("]"), NO("}"), NO("{\"a\":"), NO("{1:1}"), NO("{null:1}"),
	YES("[[],{},[{}],{\"\":[]}]"),
	/* escapes */
	YES("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\""), YES("\"\\u00e9\\u20AC\\uffff\""),
	NO("\"\\'\""), NO("\"\\a\""), NO("\"\\U0041\""), NO("\"\\u00G1\""), NO("\"\\u12\""),
	NO("\"\\x41\""), NO("\"\\0\""), NO("\"\\"), NO("\"abc"), NO("\"\\u"),
	YES("\"\\\\u0000\""), YES("\"\\\\\\\\ud800\""),
	/* \u0000, in values and keys */
	NO("\"\\u0000\""), NO("[\"a\\u0000b\"]"), NO("{\"\\u0000\":1}"), NO("{\"k\\u0000\":1}"),
	/* surrogates */
	YES("\"\\ud83d\\ude00\""), YES("\"\\uD800\\uDC00\\uDBFF\\uDFFF\""),
	NO("\"\\ud800\""), NO("\"\\udc00\""), NO("\"\\uDFFF\""), NO("\"\\ud800x\""),
	NO("\"\\ud800\\n\""), NO("\"\\ud800\\ud800\""), NO("\"\\ude00\\ud83d\""),
	NO("\"\\ud800\\u0041\""), NO("\"\\ud800\\"), NO("\"\\ud800\\u\""), NO("\"\\ud800\\uZZZZ\""),
	NO("{\"\\ud800\":1}"),
	/* UTF-8 */
	YES("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""), YES("\"\xc2\x80\xed\x9f\xbf\xee\x80\x80\""),
	NO("\"\xc0\xaf\""), NO("\"\xc1\xbf\""), NO("\"\xe0\x80\xaf\""), NO("\"\xf0\x80\x80\xaf\""),
	NO("\"\xed\xa0\x80\""), NO("\"\xed\xbf\xbf\""), NO("\"\xf4\x90\x80\x80\""), NO("\"\xf5\x80\x80\x80\""),
	NO("\"\xff\""), NO("\"\x80\""), NO("\"\xc3\""), NO("\"\xe2\x82\""), NO("\"\xc3\x28\""),
	NO("\xc3\xa9"), NO("[\xff]"), NO("\"a\"\xff"),
	/* a BOM is not whitespace */
	NO("\xef\xbb\xbf{}"), YES("\"\xef\xbb\xbf\""),
	/* NUL bytes: refused in a string; jansson drops one right after a number or literal */
	NO("\"a\0b\""), NO("\0"), NO("\0 1"), NO("{\"a\0\":1}"), NO("1\0\0"), NO("1 \0"), NO("\"a\"\0"),
	NO("tru\0e"), NO("[1\0 2]"),
	YES("1\0"), YES("true\0"), YES("[1\0,2]"), YES("{\"a\":null\0}"), YES("1.5e3\0 "),
	/* integers: int64 and one past each end; -0 is the integer 0 */
	YES("9223372036854775807"), YES("-9223372036854775808"),
	NO("9223372036854775808"), NO("-9223372036854775809"), NO("18446744073709551616"),
	NO("123456789012345678901234567890"), YES("-0"), YES("[0,-0,1,-1,10,-10]"),
	/* reals */
	YES("1e308"), YES("1.7976931348623157e308"), NO("1e309"), NO("-1e309"), NO("1.8e308"),
	YES("1e-400"), YES("-1e-400"), YES("4.9e-324"), YES("2e-320"), YES("0.1"), YES("-0.0"),
	YES("1E5"), YES("1e+5"), YES("1E-5"), YES("0e0"), YES("-0.0e-0"), YES("1.0"),
	YES("123456789.123456789e-3"),
	/* number syntax */
	NO("01"), NO("-01"), NO("00"), NO("+1"), NO(".5"), NO("-.5"), NO("1."), NO("1.e5"), NO("1e"),
	NO("1e+"), NO("1E-"), NO("-"), NO("--1"), NO("0x10"), NO("1_000"), NO("Infinity"),
	NO("-Infinity"), NO("NaN"), NO("[-]"), NO("1.5.5"), NO("1e5e5"), NO("[01]"),
	/* duplicate keys, also when they differ only in their escapes */
	NO("{\"a\":1,\"a\":2}"), NO("{\"a\":1,\"\\u0061\":2}"), NO("{\"\":1,\"\":2}"),
	NO("{\"a\":{\"b\":1,\"b\":2}}"), NO("{\"a\":{},\"a\":[]}"), NO("[{\"x\":1,\"y\":2,\"x\":3}]"),
	YES("{\"a\":1,\"A\":2,\"a \":3}"), YES("[{\"a\":1},{\"a\":2}]"), YES("{\"a\":{\"a\":{\"a\":1}}}"),
	/* escaped keys whose value is an escaped string (yajl reuses its buffer) */
	YES("{\"k\\n\":\"v\\t\",\"\\u00e9\":\"\\u00e8\\u00e7\",\"\\\"\":[\"\\\\\"]}"),
};

Test(jsonload, corpus_agrees_with_jansson)
{
	size_t accepted = 0;

	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		bool a = agree(corpus[i].s, corpus[i].len);

		cr_assert_eq(a, corpus[i].accept, "jansson %s \"%s\" (corpus entry %zu)",
		    a ? "accepts" : "refuses", shown(corpus[i].s, corpus[i].len), i);
		accepted += a;
	}
	cr_log_info("corpus: %zu texts, %zu accepted", sizeof(corpus) / sizeof(corpus[0]), accepted);
}

/* n containers (open is "[" or "{\"k\":"), inner in the middle. */
static char *nest(int n, const char *open, const char *inner, const char *close, size_t *len)
{
	size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
	char *b = malloc((size_t)n * (lo + lc) + li + 1), *p = b;

	for (int i = 0; i < n; i++, p += lo)
		memcpy(p, open, lo);
	memcpy(p, inner, li);
	p += li;
	for (int i = 0; i < n; i++, p += lc)
		memcpy(p, close, lc);
	*len = (size_t)(p - b);
	return b;
}

static bool nest_agrees(int n, const char *open, const char *inner, const char *close)
{
	size_t len;
	char *b = nest(n, open, inner, close, &len);
	bool a = agree(b, len);

	free(b);
	return a;
}

/* jansson counts every value: 2048 containers may nest when the innermost
 * is empty, 2047 around a scalar. */
Test(jsonload, depth_at_and_past_the_limit)
{
	int max = JSON_PARSER_MAX_DEPTH;

	cr_assert(nest_agrees(max, "[", "", "]"));
	cr_assert_not(nest_agrees(max + 1, "[", "", "]"));
	cr_assert(nest_agrees(max - 1, "[", "1", "]"));
	cr_assert_not(nest_agrees(max, "[", "1", "]"));
	cr_assert(nest_agrees(max, "{\"k\":", "{}", "}") == false);
	cr_assert(nest_agrees(max - 1, "{\"k\":", "{}", "}"));
	cr_assert(nest_agrees(max - 1, "{\"k\":", "null", "}"));
	cr_assert_not(nest_agrees(max, "{\"k\":", "null", "}"));
	/* 1023 x 2 containers, then 2 more, then a scalar would be the 2049th value */
	cr_assert(nest_agrees(max / 2 - 1, "[{\"\\u00e9\":", "[[]]", "}]"));
	cr_assert_not(nest_agrees(max / 2 - 1, "[{\"\\u00e9\":", "[[0]]", "}]"));
	cr_assert_not(nest_agrees(3 * max, "[", "", "]"));
	cr_assert_not(nest_agrees(max, "[", "", ""));           /* unclosed */
}

/* A string of n copies of piece, quoted, optionally as an object's key too. */
static char *big_string(const char *piece, size_t n, bool as_key, size_t *len)
{
	size_t lp = strlen(piece), body = lp * n;
	char *b = malloc(2 * body + 16), *p = b;

	if (as_key)
		*p++ = '{';
	*p++ = '"';
	for (size_t i = 0; i < n; i++, p += lp)
		memcpy(p, piece, lp);
	*p++ = '"';
	if (as_key) {
		*p++ = ':';
		*p++ = '"';
		for (size_t i = 0; i < n; i++, p += lp)
			memcpy(p, piece, lp);
		*p++ = '"';
		*p++ = '}';
	}
	*len = (size_t)(p - b);
	return b;
}

Test(jsonload, huge_strings_and_numbers)
{
	const char *pieces[] = { "x", "\xc3\xa9\xf0\x9f\x98\x80", "\\n\\u00e9\\ud83d\\ude00\\\"", "\\ud800" };
	const bool ok[] = { true, true, true, false };

	for (size_t i = 0; i < 4; i++) {
		for (int key = 0; key < 2; key++) {
			size_t len;
			char *b = big_string(pieces[i], 200000, key, &len);

			cr_assert_eq(agree(b, len), ok[i], "piece %zu", i);
			free(b);
		}
	}
	/* a real with 100 000 digits (strtod reads it), an integer with 40 */
	{
		size_t n = 100000;
		char *b = malloc(n + 8);

		memcpy(b, "0.", 2);
		memset(b + 2, '0', n);
		b[n + 1] = '7';
		cr_assert(agree(b, n + 2));
		memset(b, '9', 40);
		cr_assert_not(agree(b, 40));
		memcpy(b, "1e", 2);
		memset(b + 2, '9', n);
		cr_assert_not(agree(b, n + 2));
		memcpy(b, "1e-", 3);
		cr_assert(agree(b, n + 2));
		free(b);
	}
}

/* ---- mutations of MCP messages -------------------------------------------- */

static const char *const seeds[] = {
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
	    "\"2025-11-25\",\"capabilities\":{\"sampling\":{},\"elicitation\":{}},\"clientInfo\":"
	    "{\"name\":\"curl\",\"version\":\"1\"}}}",
	"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"state_get\","
	    "\"arguments\":{\"namespace\":\"bench\",\"key\":\"k\"}}}",
	"{\"jsonrpc\":\"2.0\",\"id\":\"a-7\",\"method\":\"tools/call\",\"params\":{\"name\":\"state_set\","
	    "\"arguments\":{\"namespace\":\"n\\u00e9\",\"key\":\"\\ud83d\\ude00\",\"value\":"
	    "\"line\\nquote\\\" tab\\t \\\\ \\/ \xc3\xa9\xe2\x82\xac\",\"ttl_ms\":60000}}}",
	"{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"tools/call\",\"params\":{\"name\":\"state_cas\","
	    "\"arguments\":{\"namespace\":\"bench\",\"key\":\"k\",\"version\":9223372036854775807,"
	    "\"value\":\"v\"}}}",
	"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":{\"cursor\":null}}",
	"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}",
	"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],"
	    "\"isError\":false}}",
	"{\"jsonrpc\":\"2.0\",\"id\":6,\"error\":{\"code\":-32601,\"message\":\"no such method\","
	    "\"data\":{\"method\":\"x/y\"}}}",
	"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":"
	    "\"t1\",\"progress\":0.5,\"total\":1.0e0,\"message\":\"half\"}}",
	"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":-9,"
	    "\"reason\":\"user\"}}",
	"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"logging/setLevel\",\"params\":{\"level\":\"debug\"}}",
	"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"resources/read\",\"params\":{\"uri\":"
	    "\"test://static/resource\",\"_meta\":{\"progressToken\":8}}}",
	"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"state_scan\","
	    "\"arguments\":{\"namespace\":\"bench\",\"prefix\":\"\",\"limit\":100}}}",
	"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]",
	"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"completion/complete\",\"params\":{\"ref\":{\"type\":"
	    "\"ref/prompt\",\"name\":\"p\"},\"argument\":{\"name\":\"a\",\"value\":\"\"}}}",
	"{\"numbers\":[0,-0,1,-1,0.5,-2.5e-3,1E10,123456789012,-9223372036854775808,1e308,4e-320],"
	    "\"empty\":{},\"list\":[],\"t\":true,\"f\":false,\"n\":null}",
	"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 11,\n  \"method\": \"tools/call\",\n  \"params\": {\n"
	    "    \"name\": \"runtime_status\",\n    \"arguments\": {}\n  }\n}\n",
	"{\"a\":[[[[[[[[[[{\"b\":[[[\"deep\"]]]}]]]]]]]]]],\"c\":\"\\u0041\\u00DF\\u6771\\uD834\\uDD1E\"}",
	"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"sampling/createMessage\",\"params\":{\"messages\":"
	    "[{\"role\":\"user\",\"content\":{\"type\":\"text\",\"text\":\"\xe4\xbd\xa0\xe5\xa5\xbd\"}}],"
	    "\"maxTokens\":100,\"temperature\":0.7}}",
};

/* What a mutation may insert: bytes and fragments near the rules' edges. */
static const char *const tokens[] = {
	"\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u", "\\", "\"", "1e309", "-1e309",
	"1e-400", "9223372036854775808", "-9223372036854775808", "-0", "01", ".5", "1.", "+1",
	"\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xf0\x9f\x98\x80", "\xc3\xa9", "\xef\xbb\xbf",
	"\v", "\f", "\t", "\n", " ", "\0", "/*x*/", "//", "true", "nul", "null", "false", ",", ":",
	"{", "}", "[", "]", "{}", "[]", "\"a\":1,", ",\"id\":2", "\"id\"", "\\n", "\\\"", "\\/", "\\'",
	"e", "E", "-", "0", "\x7f", "\x01",
};

static const unsigned char bytes[] = {
	'"', '\\', '{', '}', '[', ']', ',', ':', '0', '1', '9', '-', '+', '.', 'e', 'E', 'u', 'd',
	'8', 'a', 'f', 'n', 't', ' ', '\t', '\n', '\r', 0x00, 0x01, 0x0b, 0x0c, 0x1f, 0x7f, 0x80,
	0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff,
};

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* splitmix64: deterministic, good enough to pick mutations */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static size_t pick(size_t n)
{
	return n ? (size_t)(rng() % n) : 0;
}

#define MUT_CAP 4096

/* One random edit of b[*len] (capacity MUT_CAP). */
static void mutate(char *b, size_t *len)
{
	size_t n = *len, at = pick(n + 1), k;
	const char *tok;

	switch (pick(8)) {
	case 0:         /* flip a bit */
		if (n)
			b[at % n] ^= (char)(1u << pick(8));
		break;
	case 1:         /* overwrite a byte */
		if (n)
			b[at % n] = (char)bytes[pick(sizeof(bytes))];
		break;
	case 2:         /* insert a byte */
		if (n + 1 < MUT_CAP) {
			memmove(b + at + 1, b + at, n - at);
			b[at] = (char)bytes[pick(sizeof(bytes))];
			*len = n + 1;
		}
		break;
	case 3:         /* insert a token */
		tok = tokens[pick(sizeof(tokens) / sizeof(tokens[0]))];
		k = tok[0] ? strlen(tok) : 1;
		if (n + k < MUT_CAP) {
			memmove(b + at + k, b + at, n - at);
			memcpy(b + at, tok, k);
			*len = n + k;
		}
		break;
	case 4:         /* delete a few bytes */
		k = 1 + pick(4);
		if (at + k <= n) {
			memmove(b + at, b + at + k, n - at - k);
			*len = n - k;
		}
		break;
	case 5:         /* truncate */
		*len = at;
		break;
	case 6:         /* copy a span elsewhere (duplicate members, nesting) */
		k = 1 + pick(24);
		if (n >= k && n + k < MUT_CAP) {
			size_t from = pick(n - k + 1);
			char span[32];

			memcpy(span, b + from, k);
			memmove(b + at + k, b + at, n - at);
			memcpy(b + at, span, k);
			*len = n + k;
		}
		break;
	default:        /* overwrite with a token */
		tok = tokens[pick(sizeof(tokens) / sizeof(tokens[0]))];
		k = tok[0] ? strlen(tok) : 1;
		if (at + k <= n)
			memcpy(b + at, tok, k);
		break;
	}
}

Test(jsonload, mutated_requests_agree_with_jansson, .timeout = 240)
{
	enum { ROUNDS = 300000 };
	size_t nseeds = sizeof(seeds) / sizeof(seeds[0]), accepted = 0;
	char b[MUT_CAP];

	rng_state = 20250611;
	for (size_t i = 0; i < nseeds; i++)
		cr_assert(agree(seeds[i], strlen(seeds[i])), "seed %zu is not accepted", i);
	for (int r = 0; r < ROUNDS; r++) {
		const char *s = seeds[pick(nseeds)];
		size_t len = strlen(s), edits = 1 + pick(3) + (pick(8) == 0 ? pick(8) : 0);

		memcpy(b, s, len);
		for (size_t e = 0; e < edits; e++)
			mutate(b, &len);
		accepted += agree(b, len);
	}
	cr_log_info("mutations: %d texts, %zu accepted", ROUNDS, accepted);
	/* both verdicts must be well represented, or the fuzz proves little */
	cr_assert_gt(accepted, ROUNDS / 20);
	cr_assert_lt(accepted, ROUNDS - ROUNDS / 20);
}

/* ---- errors ----------------------------------------------------------------- */

static void refused_at(const char *s, size_t len, int pos, enum json_error_code code)
{
	json_error_t e;
	json_t *doc = mc_json_load(s, len, &e);

	cr_assert_null(doc, "accepted: %s", shown(s, len));
	cr_assert(e.text[0] != '\0');
	cr_assert_eq(e.position, pos, "\"%s\": position %d, expected %d (%s)", shown(s, len),
	    e.position, pos, e.text);
	cr_assert_eq(json_error_code(&e), code, "\"%s\": code %d, expected %d (%s)", shown(s, len),
	    (int)json_error_code(&e), (int)code, e.text);
}

#define REFUSED_AT(lit, pos, code) refused_at(lit, sizeof(lit) - 1, pos, code)

Test(jsonload, refusals_say_what_and_where)
{
	REFUSED_AT("[\"ab\xc0\xaf\"]", 4, json_error_invalid_utf8);
	REFUSED_AT("{\"k\":\"\\ud800\"}", 6, json_error_invalid_syntax);
	REFUSED_AT("{\"k\":\"x\\u0000\"}", 7, json_error_null_character);
	REFUSED_AT("[1,\v2]", 3, json_error_invalid_syntax);
	REFUSED_AT("{\"a\":1,\"a\":2}", 12, json_error_duplicate_key);
	REFUSED_AT("[9223372036854775808]", 20, json_error_numeric_overflow);
	REFUSED_AT("1e309", 5, json_error_numeric_overflow);
	REFUSED_AT("{\"a\":", 5, json_error_premature_end_of_input);
	REFUSED_AT("", 0, json_error_premature_end_of_input);
	REFUSED_AT("[1] x", 5, json_error_end_of_input_expected);
	REFUSED_AT("{} \"x", 3, json_error_end_of_input_expected);     /* yajl lets it by */
	{
		size_t len;
		char *b = nest(JSON_PARSER_MAX_DEPTH + 1, "[", "", "]", &len);

		refused_at(b, len, JSON_PARSER_MAX_DEPTH + 1, json_error_stack_overflow);
		free(b);
	}
}

Test(jsonload, errors_are_optional_and_success_clears_them)
{
	json_error_t e, j;
	json_t *doc;

	cr_assert_null(mc_json_load("[", 1, NULL));
	cr_assert_null(mc_json_load(NULL, 0, &e));
	cr_assert(e.text[0] != '\0');
	doc = mc_json_load("[1]", 3, NULL);
	cr_assert_not_null(doc);
	json_decref(doc);
	memset(&e, 'x', sizeof(e));
	doc = mc_json_load("{}", 2, &e);
	json_decref(doc);
	doc = json_loadb("{}", 2, FLAGS, &j);
	json_decref(doc);
	cr_assert_eq(e.position, j.position);
	cr_assert_eq(e.line, j.line);
	cr_assert_eq(e.column, j.column);
	cr_assert_str_eq(e.text, j.text);
	cr_assert_str_eq(e.source, j.source);
}

Test(jsonload, rpc_parse_reports_the_decoder_refusal)
{
	struct mc_rpc_msg msg;
	char err[256];
	const char *s = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\\udc00\"}";

	cr_assert_eq(mc_rpc_parse(s, strlen(s), &msg, err, sizeof(err)), MC_RPC_PARSE_ERROR);
	cr_assert(strstr(err, "invalid JSON at byte 45: ") == err, "%s", err);
	cr_assert_null(msg.root);
}

/* ---- out of memory ------------------------------------------------------- */

/* jansson's allocator, failing after `budget` allocations, counting live blocks. */
static long budget, live;

static void *counting_malloc(size_t n)
{
	void *p;

	if (budget-- <= 0)
		return NULL;
	p = malloc(n);
	live += p != NULL;
	return p;
}

static void counting_free(void *p)
{
	live -= p != NULL;
	free(p);
}

Test(jsonload, out_of_memory_anywhere_leaks_nothing)
{
	/* every kind of node, an escaped key, an array past jansson's first
	 * growth, nesting past the inline stack */
	char text[4096];
	size_t len;
	json_t *want, *got;
	long needed = -1;

	len = (size_t)snprintf(text, sizeof(text), "{\"a\":[1,2.5,\"s\",true,false,null,{},[],"
	    "0,1,2,3,4,5,6,7,8,9],\"k\\u00e9\":\"v\\n\",\"o\":{\"p\":{\"q\":-1}},\"d\":"
	    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"x\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}");
	want = json_loadb(text, len, FLAGS, NULL);
	cr_assert_not_null(want);
	json_set_alloc_funcs(counting_malloc, counting_free);
	for (long k = 0; needed < 0; k++) {
		json_error_t e;

		budget = k;
		live = 0;
		got = mc_json_load(text, len, &e);
		if (got != NULL) {
			cr_assert(same_tree(want, got));
			json_decref(got);
			needed = k;
		} else {
			cr_assert_eq(json_error_code(&e), json_error_out_of_memory, "k=%ld: %s", k, e.text);
		}
		cr_assert_eq(live, 0, "k=%ld: %ld blocks left", k, live);
		cr_assert_lt(k, 10000);
	}
	json_set_alloc_funcs(malloc, free);
	json_decref(want);
	cr_log_info("out of memory: %ld allocations needed, each one failed in turn", needed);
}

/* mc_utf8_valid agrees with jansson (json_stringn refuses what is not
 * UTF-8) on s[0..n), and on s followed by more text. */
static void utf8_as_jansson(const uint8_t *s, size_t n)
{
	uint8_t longer[8];
	json_t *j = json_stringn((const char *)s, n);

	cr_assert_eq(mc_utf8_valid(s, n), j != NULL, "%zu bytes %02x %02x %02x %02x", n,
	    n > 0 ? s[0] : 0, n > 1 ? s[1] : 0, n > 2 ? s[2] : 0, n > 3 ? s[3] : 0);
	json_decref(j);
	memcpy(longer, s, n);
	memcpy(longer + n, "ab", 2);
	j = json_stringn((const char *)longer, n + 2);
	cr_assert_eq(mc_utf8_valid(longer, n + 2), j != NULL);
	json_decref(j);
}

Test(jsonload, utf8_validity_is_janssons)
{
	static const uint8_t tails[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
		0xc0, 0xff };
	uint8_t s[4];

	/* every one- and two-byte sequence */
	for (unsigned a = 0; a < 256; a++) {
		s[0] = (uint8_t)a;
		utf8_as_jansson(s, 1);
		for (unsigned b = 0; b < 256; b++) {
			s[1] = (uint8_t)b;
			utf8_as_jansson(s, 2);
		}
	}
	/* three and four bytes: every lead and second byte, edge bytes after */
	for (unsigned a = 0xc0; a < 256; a++) {
		s[0] = (uint8_t)a;
		for (unsigned b = 0; b < 256; b++) {
			s[1] = (uint8_t)b;
			for (size_t i = 0; i < sizeof(tails); i++) {
				s[2] = tails[i];
				utf8_as_jansson(s, 3);
				for (size_t k = 0; k < sizeof(tails); k++) {
					s[3] = tails[k];
					utf8_as_jansson(s, 4);
				}
			}
		}
	}
}
