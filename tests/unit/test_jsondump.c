/*
 * test_jsondump.c - unit tests for the answer encoder
 * (workers/protocol/jsondump.c, contract in mc_protocol.h: mc_json_dump):
 * its text is jansson's JSON_COMPACT text byte for byte, whatever the
 * values (escapes, non-ASCII, NUL, int64 limits, reals, empty containers,
 * member order); it moves to the heap when the buffer is too small; a
 * document nested deeper than yajl allows is still written.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mc_protocol.h"

/* mc_json_dump and json_dumps must agree on doc; buf is cap bytes. */
static void same_as_jansson(const json_t *doc, size_t cap)
{
	char *buf = malloc(cap ? cap : 1), *want = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
	size_t len = 99;
	char *got = mc_json_dump(doc, buf, cap, &len);

	cr_assert_not_null(want);
	cr_assert_not_null(got);
	cr_assert_eq(len, strlen(want), "length %zu, jansson %zu: %s", len, strlen(want), got);
	cr_assert_eq(memcmp(got, want, len), 0, "got  %s\nwant %s", got, want);
	cr_assert_eq(got[len], '\0');
	if (len < cap)
		cr_assert_eq(got, buf, "a text that fits must stay in the caller's buffer");
	else
		cr_assert_neq(got, buf, "a text that does not fit must go to the heap");
	if (got != buf)
		free(got);
	free(buf);
	free(want);
}

static void same_text(const char *text)
{
	json_error_t e;
	json_t *doc = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

	cr_assert_not_null(doc, "%s: %s", text, e.text);
	same_as_jansson(doc, 4096);
	same_as_jansson(doc, 1);
	json_decref(doc);
}

Test(jsondump, an_answer_as_jansson_writes_it)
{
	same_text("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\","
	    "\"text\":\"{\\\"found\\\":true,\\\"value\\\":\\\"v\\\"}\"}],"
	    "\"structuredContent\":{\"found\":true,\"version\":1795623540765397,"
	    "\"value\":\"v\"},\"isError\":false}}");
}

Test(jsondump, scalars_and_empty_containers)
{
	const char *texts[] = { "null", "true", "false", "0", "-1", "\"\"", "{}", "[]",
		"[[],{},[{}]]", "{\"a\":{},\"b\":[]}", "9223372036854775807",
		"-9223372036854775808" };

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		same_text(texts[i]);
}

Test(jsondump, escapes_and_non_ascii)
{
	same_text("[\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r bs \\b ff \\f\"]");
	same_text("[\"\\u0001\\u001f\\u007f \\u00e9 \\u20ac \\ud83d\\ude00 \\u2028\"]");
	same_text("{\"cl\\u00e9\":\"\\u0000\"}");
}

Test(jsondump, a_nul_inside_a_string_is_kept)
{
	json_t *doc = json_pack("{s:s%}", "k", "a\0b", (size_t)3);

	same_as_jansson(doc, 64);
	json_decref(doc);
}

Test(jsondump, reals_as_jansson_writes_them)
{
	const double v[] = { 0.0, -0.0, 1.0, 0.1, 1.5e300, -2.25e-300, 123456789.0, 1e17, 3.0e-5,
		1e16, 1e22, 5e-324, -7.0 };
	json_t *a = json_array();

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		json_array_append_new(a, json_real(v[i]));
	same_as_jansson(a, 4096);
	json_decref(a);
}

Test(jsondump, members_keep_their_order)
{
	json_t *o = json_object();

	json_object_set_new(o, "zeta", json_integer(1));
	json_object_set_new(o, "alpha", json_integer(2));
	json_object_set_new(o, "mid", json_integer(3));
	same_as_jansson(o, 4096);
	json_decref(o);
}

Test(jsondump, a_long_text_grows_on_the_heap)
{
	char big[20000];
	json_t *doc;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	doc = json_pack("[s,s,s]", big, big, big);
	same_as_jansson(doc, 4096);
	same_as_jansson(doc, 0);
	json_decref(doc);
}

Test(jsondump, deeper_than_yajl_nests_is_still_written)
{
	json_t *doc = json_integer(7);

	for (int i = 0; i < 300; i++) {
		json_t *outer = i % 2 ? json_array() : json_object();

		if (json_is_array(outer))
			json_array_append_new(outer, doc);
		else
			json_object_set_new(outer, "d", doc);
		doc = outer;
	}
	same_as_jansson(doc, 4096);
	same_as_jansson(doc, 16);
	json_decref(doc);
}
