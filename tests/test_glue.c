// Checks the GLUE TSV loader on small fixtures written like the real files of all nine tasks
// (header-less CoLA train/dev, MRPC's BOM and CRLF, MNLI's matched/mismatched splits) and on malformed ones.
#include <string.h>
#include <sys/stat.h>

#include "../host/data/glue.h"
#include "test_util.h"

static const char *task_dirs[] = {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"};

static void write_text(const char *path, const char *text, size_t length) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, length, f) != length) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

// Writes <root>/<dir>/<file>.
static void write_fixture(const char *root, const char *dir, const char *file, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%s/%s", root, dir, file);
    write_text(path, text, strlen(text));
}

// Loads a split through qft_glue_split_path and checks the count and example `index`.
static void check_split(const char *root, const char *task, qft_glue_split split, size_t count, size_t index,
                        const char *text_a, const char *text_b, float label, int has_label) {
    char path[1200];
    qft_error err = {{0}};
    qft_glue_examples ex;
    CHECK(qft_glue_split_path(root, task, split, path, sizeof path, &err) == QFT_OK, "%s path: %s", task,
          err.message);
    qft_status status = qft_glue_load_split(task, path, split, &ex, &err);
    CHECK(status == QFT_OK, "%s split %d: %s", task, (int)split, err.message);
    if (status != QFT_OK) return;
    CHECK(ex.count == count, "%s split %d: %zu examples, expected %zu", task, (int)split, ex.count, count);
    if (index < ex.count) {
        const qft_glue_example *e = &ex.examples[index];
        CHECK(strcmp(e->text_a, text_a) == 0, "%s[%zu] text_a \"%s\"", task, index, e->text_a);
        if (text_b)
            CHECK(e->text_b && strcmp(e->text_b, text_b) == 0, "%s[%zu] text_b \"%s\"", task, index,
                  e->text_b ? e->text_b : "(null)");
        else
            CHECK(e->text_b == NULL, "%s[%zu] has a text_b", task, index);
        CHECK(e->label == label && e->has_label == has_label, "%s[%zu] label %g/%d, expected %g/%d", task, index,
              (double)e->label, e->has_label, (double)label, has_label);
    }
    // Test splits never carry labels, train/dev always do.
    for (size_t i = 0; i < ex.count; i++)
        if (ex.examples[i].has_label != has_label) {
            CHECK(0, "%s example %zu: has_label %d", task, i, ex.examples[i].has_label);
            break;
        }
    qft_glue_free(&ex);
    CHECK(ex.examples == NULL && ex.count == 0, "free zeroes");
}

static void write_all_fixtures(const char *root) {
    // CoLA: no header in train/dev (source, label, original label, sentence); test has "index sentence".
    write_fixture(root, "CoLA", "train.tsv",
                  "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
                  "gj04\t1\t\tOne more pseudo generalization and I'm giving up.\n"
                  "gj04\t0\t*\tThey drank the pub.\n");
    write_fixture(root, "CoLA", "dev.tsv",
                  "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
                  "gj04\t0\t*\tThe more books I ask to whom he will give, the more he reads.");  // no final newline
    write_fixture(root, "CoLA", "test.tsv", "index\tsentence\n0\tBill whistled past the house.\n"
                                            "1\tThe car honked its way down the road.\n");
    // SST-2: "sentence label" (sentences keep their trailing space); test "index sentence".
    write_fixture(root, "SST-2", "train.tsv",
                  "sentence\tlabel\nhide new secretions from the parental units \t0\n"
                  "contains no wit , only labored gags \t0\nthat loves its characters \t1\n");
    write_fixture(root, "SST-2", "dev.tsv", "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n");
    write_fixture(root, "SST-2", "test.tsv", "index\tsentence\n0\tuneasy mishmash of styles and genres .\n");
    // MRPC: UTF-8 BOM, CRLF line ends, quotes are plain characters (QUOTE_NONE).
    write_fixture(root, "MRPC", "train.tsv",
                  "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
                  "1\t702876\t702977\tAmrozi accused his brother , whom he called \" the witness \" , of deliberately "
                  "distorting his evidence .\tReferring to him as only \" the witness \" , Amrozi accused his brother "
                  "of deliberately distorting his evidence .\r\n"
                  "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ "
                  "2.5 billion .\tYucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ "
                  "1.8 billion in 1998 .\r\n");
    write_fixture(root, "MRPC", "dev.tsv",
                  "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
                  "1\t1355540\t1355592\tHe said the foodservice pie business doesn 't fit .\tThe foodservice pie "
                  "business does not fit .\r\n");
    write_fixture(root, "MRPC", "test.tsv",
                  "\xEF\xBB\xBFindex\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
                  "0\t1089874\t1089925\tPCCW 's chief operating officer will leave .\tCurrent Chief Operating "
                  "Officer Mike Butcher will leave .\r\n");
    // STS-B: 10 columns, sentences at 7 and 8, score last; test has 9.
    const char *stsb_header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2";
    char text[2048];
    snprintf(text, sizeof text,
             "%s\tscore\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane "
             "is taking off.\t5.000\n1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a large "
             "flute.\tA man is playing a flute.\t3.800\n",
             stsb_header);
    write_fixture(root, "STS-B", "train.tsv", text);
    snprintf(text, sizeof text,
             "%s\tscore\n0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man with a hard hat is dancing.\tA "
             "man wearing a hard hat is dancing.\t0.000\n",
             stsb_header);
    write_fixture(root, "STS-B", "dev.tsv", text);
    snprintf(text, sizeof text,
             "%s\n0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl is styling her hair.\tA girl is "
             "brushing her hair.\n",
             stsb_header);
    write_fixture(root, "STS-B", "test.tsv", text);
    // QQP: train has a question broken over two lines (4 then 3 columns): both rows are skipped.
    write_fixture(root, "QQP", "train.tsv",
                  "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                  "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough "
                  "for the exam jlpt5?\t0\n"
                  "201359\t303345\t303346\tHow do I start\n"
                  "a blog?\tWhat is a good way to start a blog?\t1\n"
                  "402555\t536040\t536041\tWhat are some good books?\tWhich are the best books?\t1\n");
    write_fixture(root, "QQP", "dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                          "40066\t178\t179\tWhy are you?\tWho are you?\t0\n");
    write_fixture(root, "QQP", "test.tsv", "id\tquestion1\tquestion2\n0\tWhy do rockets look white?\tWhy are "
                                           "rockets and boosters painted white?\n");
    // MNLI: train 12 columns, dev 16 (five annotator labels), test 10; label is the last column.
    const char *mnli_head = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2";
    const char *mnli_row = "0\t31193\t31193n\tgovernment\t( ( Conceptually cream ) skimming )\t( Product ...)\t"
                           "(ROOT (S ...))\t(ROOT (S ...))\tConceptually cream skimming has two basic dimensions.\t"
                           "Product and geography are what make cream skimming work.";
    snprintf(text, sizeof text, "%s\tlabel1\tgold_label\n%s\tneutral\tneutral\n%s\tcontradiction\tcontradiction\n",
             mnli_head, mnli_row, mnli_row);
    write_fixture(root, "MNLI", "train.tsv", text);
    const char *dev_labels = "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label";
    snprintf(text, sizeof text, "%s%s\n%s\tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n", mnli_head,
             dev_labels, mnli_row);
    write_fixture(root, "MNLI", "dev_matched.tsv", text);
    snprintf(text, sizeof text, "%s%s\n%s\tentailment\tentailment\tentailment\tentailment\tentailment\tentailment\n"
             "%s\tcontradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\tcontradiction\n",
             mnli_head, dev_labels, mnli_row, mnli_row);
    write_fixture(root, "MNLI", "dev_mismatched.tsv", text);
    snprintf(text, sizeof text, "%s\n%s\n", mnli_head, mnli_row);
    write_fixture(root, "MNLI", "test_matched.tsv", text);
    snprintf(text, sizeof text, "%s\n%s\n%s\n%s\n", mnli_head, mnli_row, mnli_row, mnli_row);
    write_fixture(root, "MNLI", "test_mismatched.tsv", text);
    // QNLI, RTE, WNLI: "index <text> <text> label".
    write_fixture(root, "QNLI", "train.tsv",
                  "index\tquestion\tsentence\tlabel\n0\tWhen did the third Digimon series begin?\tUnlike the two "
                  "seasons before it and most of the seasons that followed, Digimon Tamers takes a darker and more "
                  "realistic approach.\tnot_entailment\n1\tWhich missile batteries often have individual launchers "
                  "several kilometres from one another?\tWhen MANPADS is operated by specialists, batteries may have "
                  "several dozen teams deploying separately in small sections.\tentailment\n");
    write_fixture(root, "QNLI", "dev.tsv", "index\tquestion\tsentence\tlabel\n0\tWhat came into force after the new "
                                           "constitution was herald?\tAs of that day, the new constitution heralding "
                                           "the Second Republic came into force.\tentailment\n");
    write_fixture(root, "QNLI", "test.tsv", "index\tquestion\tsentence\n0\tWhat organization is devoted to Jihad?\t"
                                            "For some decades prior to the First Palestine Intifada...\n");
    write_fixture(root, "RTE", "train.tsv",
                  "index\tsentence1\tsentence2\tlabel\n0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons "
                  "of Mass Destruction Found in Iraq.\tnot_entailment\n1\tA place of sorrow, after Pope John Paul II "
                  "died, became a place of celebration.\tPope Benedict XVI is the new leader of the Roman Catholic "
                  "Church.\tentailment\n");
    write_fixture(root, "RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tDana Reeve died.\tChristopher "
                                          "Reeve had an accident.\tnot_entailment\n");
    write_fixture(root, "RTE", "test.tsv", "index\tsentence1\tsentence2\n0\tMangla was summoned.\tBurma's "
                                           "military stays.\n");
    write_fixture(root, "WNLI", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tI stuck a pin through a carrot. "
                                             "When I pulled the pin out, it had a hole.\tThe carrot had a hole.\t1\n"
                                             "1\tJohn couldn't see the stage with Billy in front of him because he "
                                             "is so short.\tJohn is so short.\t1\n");
    write_fixture(root, "WNLI", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tThe drain is clogged with hair. "
                                           "It has to be cleaned.\tThe hair has to be cleaned.\t0\n");
    write_fixture(root, "WNLI", "test.tsv", "index\tsentence1\tsentence2\n0\tMaria is a Jehovah's Witness.\tMaria "
                                            "helped.\n");
}

static void test_all_tasks(const char *root) {
    check_split(root, "cola", QFT_GLUE_TRAIN, 3, 2, "They drank the pub.", NULL, 0.0f, 1);
    check_split(root, "CoLA", QFT_GLUE_DEV, 2, 1, "The more books I ask to whom he will give, the more he reads.",
                NULL, 0.0f, 1);
    check_split(root, "cola", QFT_GLUE_TEST, 2, 0, "Bill whistled past the house.", NULL, -1.0f, 0);
    check_split(root, "sst-2", QFT_GLUE_TRAIN, 3, 2, "that loves its characters ", NULL, 1.0f, 1);
    check_split(root, "sst2", QFT_GLUE_DEV, 1, 0, "it 's a charming and often affecting journey . ", NULL, 1.0f, 1);
    check_split(root, "SST-2", QFT_GLUE_TEST, 1, 0, "uneasy mishmash of styles and genres .", NULL, -1.0f, 0);
    check_split(root, "mrpc", QFT_GLUE_TRAIN, 2, 0,
                "Amrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his "
                "evidence .",
                "Referring to him as only \" the witness \" , Amrozi accused his brother of deliberately distorting "
                "his evidence .",
                1.0f, 1);
    check_split(root, "mrpc", QFT_GLUE_DEV, 1, 0, "He said the foodservice pie business doesn 't fit .",
                "The foodservice pie business does not fit .", 1.0f, 1);
    check_split(root, "mrpc", QFT_GLUE_TEST, 1, 0, "PCCW 's chief operating officer will leave .",
                "Current Chief Operating Officer Mike Butcher will leave .", -1.0f, 0);
    check_split(root, "sts-b", QFT_GLUE_TRAIN, 2, 1, "A man is playing a large flute.", "A man is playing a flute.",
                3.8f, 1);
    check_split(root, "stsb", QFT_GLUE_DEV, 1, 0, "A man with a hard hat is dancing.",
                "A man wearing a hard hat is dancing.", 0.0f, 1);
    check_split(root, "STS-B", QFT_GLUE_TEST, 1, 0, "A girl is styling her hair.", "A girl is brushing her hair.",
                -1.0f, 0);
    check_split(root, "qqp", QFT_GLUE_TRAIN, 2, 1, "What are some good books?", "Which are the best books?", 1.0f, 1);
    check_split(root, "qqp", QFT_GLUE_DEV, 1, 0, "Why are you?", "Who are you?", 0.0f, 1);
    check_split(root, "qqp", QFT_GLUE_TEST, 1, 0, "Why do rockets look white?",
                "Why are rockets and boosters painted white?", -1.0f, 0);
    const char *premise = "Conceptually cream skimming has two basic dimensions.";
    const char *hypothesis = "Product and geography are what make cream skimming work.";
    check_split(root, "mnli", QFT_GLUE_TRAIN, 2, 0, premise, hypothesis, 2.0f, 1);  // neutral
    check_split(root, "mnli", QFT_GLUE_TRAIN, 2, 1, premise, hypothesis, 0.0f, 1);  // contradiction
    check_split(root, "mnli", QFT_GLUE_DEV, 1, 0, premise, hypothesis, 2.0f, 1);
    check_split(root, "mnli", QFT_GLUE_DEV_MISMATCHED, 2, 0, premise, hypothesis, 1.0f, 1);  // entailment
    check_split(root, "mnli", QFT_GLUE_TEST, 1, 0, premise, hypothesis, -1.0f, 0);
    check_split(root, "mnli", QFT_GLUE_TEST_MISMATCHED, 3, 2, premise, hypothesis, -1.0f, 0);
    check_split(root, "qnli", QFT_GLUE_TRAIN, 2, 0, "When did the third Digimon series begin?",
                "Unlike the two seasons before it and most of the seasons that followed, Digimon Tamers takes a "
                "darker and more realistic approach.",
                1.0f, 1);
    check_split(root, "qnli", QFT_GLUE_DEV, 1, 0, "What came into force after the new constitution was herald?",
                "As of that day, the new constitution heralding the Second Republic came into force.", 0.0f, 1);
    check_split(root, "qnli", QFT_GLUE_TEST, 1, 0, "What organization is devoted to Jihad?",
                "For some decades prior to the First Palestine Intifada...", -1.0f, 0);
    check_split(root, "rte", QFT_GLUE_TRAIN, 2, 1,
                "A place of sorrow, after Pope John Paul II died, became a place of celebration.",
                "Pope Benedict XVI is the new leader of the Roman Catholic Church.", 0.0f, 1);
    check_split(root, "rte", QFT_GLUE_DEV, 1, 0, "Dana Reeve died.", "Christopher Reeve had an accident.", 1.0f, 1);
    check_split(root, "rte", QFT_GLUE_TEST, 1, 0, "Mangla was summoned.", "Burma's military stays.", -1.0f, 0);
    check_split(root, "wnli", QFT_GLUE_TRAIN, 2, 1,
                "John couldn't see the stage with Billy in front of him because he is so short.", "John is so short.",
                1.0f, 1);
    check_split(root, "wnli", QFT_GLUE_DEV, 1, 0, "The drain is clogged with hair. It has to be cleaned.",
                "The hair has to be cleaned.", 0.0f, 1);
    check_split(root, "wnli", QFT_GLUE_TEST, 1, 0, "Maria is a Jehovah's Witness.", "Maria helped.", -1.0f, 0);

    // qft_glue_load picks the test layout from the file name; QQP reports its skipped rows.
    char path[1200];
    qft_error err = {{0}};
    qft_glue_examples ex;
    snprintf(path, sizeof path, "%s/CoLA/test.tsv", root);
    CHECK(qft_glue_load("cola", path, &ex, &err) == QFT_OK && ex.count == 2 && !ex.examples[1].has_label &&
              ex.task == qft_glue_task_by_id(QFT_GLUE_COLA),
          "load cola test by name: %s", err.message);
    qft_glue_free(&ex);
    snprintf(path, sizeof path, "%s/MNLI/test_mismatched.tsv", root);
    CHECK(qft_glue_load("mnli", path, &ex, &err) == QFT_OK && ex.count == 3 && !ex.examples[0].has_label,
          "load mnli test_mismatched by name: %s", err.message);
    qft_glue_free(&ex);
    snprintf(path, sizeof path, "%s/QQP/train.tsv", root);
    CHECK(qft_glue_load("qqp", path, &ex, &err) == QFT_OK && ex.count == 2 && ex.skipped_rows == 2,
          "qqp skipped %zu: %s", ex.skipped_rows, err.message);
    qft_glue_free(&ex);
    snprintf(path, sizeof path, "%s/MRPC/dev.tsv", root);
    CHECK(qft_glue_load("mrpc", path, &ex, &err) == QFT_OK && ex.count == 1 && ex.examples[0].label == 1.0f &&
              strchr(ex.examples[0].text_b, '\r') == NULL,
          "mrpc CRLF: %s", err.message);
    qft_glue_free(&ex);
    // A file of one task read as another fails on the header.
    snprintf(path, sizeof path, "%s/SST-2/train.tsv", root);
    CHECK(qft_glue_load("qnli", path, &ex, &err) == QFT_ERR_PARSE && strstr(err.message, ":1:") &&
              ex.examples == NULL,
          "sst2 as qnli: %s", err.message);
}

// Writes text to <dir>/<name> and loads it as task; returns the status, err holds the message.
static qft_status load_text(const char *dir, const char *name, const char *task, const char *text, size_t length,
                            qft_glue_examples *ex, qft_error *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_text(path, text, length);
    return qft_glue_load(task, path, ex, err);
}

static void test_malformed(const char *dir) {
    qft_error err = {{0}};
    qft_glue_examples ex;
    const char *t;
#define EXPECT_FAIL(name, task, text, code, needle)                                                          \
    do {                                                                                                     \
        t = (text);                                                                                          \
        qft_status s_ = load_text(dir, name, task, t, strlen(t), &ex, &err);                                 \
        CHECK(s_ == (code) && strstr(err.message, needle) && strstr(err.message, name) && ex.count == 0,     \
              "%s/%s: status %d, message \"%s\", expected \"%s\"", task, name, (int)s_, err.message, needle); \
    } while (0)
    // Wrong column counts name file:line.
    EXPECT_FAIL("train.tsv", "cola", "gj04\t1\t\tGood.\ngj04\t0\tBad.\n", QFT_ERR_PARSE,
                "train.tsv:2: expected 4 tab-separated columns, got 3");
    EXPECT_FAIL("dev.tsv", "rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tc\tentailment\n",
                QFT_ERR_PARSE, "dev.tsv:3: expected 4 tab-separated columns (as the header), got 5");
    EXPECT_FAIL("test.tsv", "qqp", "id\tquestion1\tquestion2\n0\tbroken\n", QFT_ERR_PARSE, "test.tsv:2:");
    EXPECT_FAIL("dev.tsv", "qnli", "index\tquestion\tsentence\tlabel\n0\tq\ts\tentailment\n\n1\tq\ts\tentailment\n",
                QFT_ERR_PARSE, "dev.tsv:3:");  // a blank line mid-file
    // Headers: missing, too short, wrong names.
    EXPECT_FAIL("train.tsv", "sst2", "a fine film \t1\n", QFT_ERR_PARSE, "train.tsv:1: header column 1");
    EXPECT_FAIL("train.tsv", "mnli", "index\tsentence1\tsentence2\tgold_label\n", QFT_ERR_PARSE,
                "expected at least 11");
    EXPECT_FAIL("train.tsv", "sst2", "", QFT_ERR_PARSE, "empty file");
    EXPECT_FAIL("dev.tsv", "sst2", "sentence\tlabel\n", QFT_ERR_PARSE, "no examples");
    EXPECT_FAIL("dev.tsv", "cola", "", QFT_ERR_PARSE, "no examples");
    // Labels.
    EXPECT_FAIL("train.tsv", "rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n", QFT_ERR_PARSE,
                "train.tsv:2: rte label \"neutral\": expected one of \"entailment\", \"not_entailment\"");
    EXPECT_FAIL("dev.tsv", "cola", "gj04\t2\t\tHmm.\n", QFT_ERR_PARSE, "dev.tsv:1: cola label \"2\"");
    EXPECT_FAIL("train.tsv", "mnli",
                "index\tpromptID\tpairID\tgenre\tb1\tb2\tp1\tp2\tsentence1\tsentence2\tlabel1\tgold_label\n"
                "0\t1\t1n\tfiction\tx\tx\tx\tx\tpremise\thypothesis\t-\t-\n",
                QFT_ERR_PARSE, "train.tsv:2: mnli label \"-\"");
    const char *stsb_head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
    char text[1024];
    snprintf(text, sizeof text, "%s0\tg\tf\ty\to\ts\ts\ta\tb\tabc\n", stsb_head);
    EXPECT_FAIL("train.tsv", "stsb", text, QFT_ERR_PARSE, "train.tsv:2: stsb score \"abc\": expected a number in [0, 5]");
    snprintf(text, sizeof text, "%s0\tg\tf\ty\to\ts\ts\ta\tb\t5.5\n", stsb_head);
    EXPECT_FAIL("train.tsv", "stsb", text, QFT_ERR_PARSE, "stsb score \"5.5\"");
    snprintf(text, sizeof text, "%s0\tg\tf\ty\to\ts\ts\ta\tb\t\n", stsb_head);
    EXPECT_FAIL("train.tsv", "stsb", text, QFT_ERR_PARSE, "stsb score \"\"");
    // STS-B train file read as a test file (9 columns expected).
    EXPECT_FAIL("test.tsv", "stsb", text, QFT_ERR_PARSE, "expected 9");
    // A NUL byte.
    static const char nul_text[] = "sentence\tlabel\nfine\t1\nbad\0byte\t0\n";
    qft_status s = load_text(dir, "train.tsv", "sst2", nul_text, sizeof nul_text - 1, &ex, &err);
    CHECK(s == QFT_ERR_PARSE && strstr(err.message, "train.tsv:3: NUL byte"), "NUL: %s", err.message);
    // Unknown task, missing file, mismatched split of a task without one.
    EXPECT_FAIL("train.tsv", "squad", "x\n", QFT_ERR_INVALID, "squad");
    char path[1200];
    snprintf(path, sizeof path, "%s/absent.tsv", dir);
    CHECK(qft_glue_load("sst2", path, &ex, &err) == QFT_ERR_IO && strstr(err.message, "absent.tsv"), "missing: %s",
          err.message);
    CHECK(qft_glue_load_split("rte", path, QFT_GLUE_DEV_MISMATCHED, &ex, &err) == QFT_ERR_INVALID,
          "rte mismatched: %s", err.message);
    CHECK(qft_glue_split_path(dir, "cola", QFT_GLUE_TEST_MISMATCHED, path, sizeof path, &err) == QFT_ERR_INVALID,
          "cola mismatched path");
    CHECK(qft_glue_split_path(dir, "cola", QFT_GLUE_TRAIN, path, 8, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "too long"), "short path buffer");
    // QQP train skips a bad row, QQP dev too; but a QQP file of only bad rows has no examples.
    EXPECT_FAIL("train.tsv", "qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tonly half\n",
                QFT_ERR_PARSE, "no examples");
    EXPECT_FAIL("train.tsv", "qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\ta\tb\tyes\n",
                QFT_ERR_PARSE, "qqp label \"yes\"");
    // Quotes are ordinary characters: an unbalanced quote does not swallow the next line.
    t = "sentence\tlabel\n\"the film 's a mess\t0\nthe \"end\"\t1\n";
    s = load_text(dir, "train.tsv", "sst2", t, strlen(t), &ex, &err);
    CHECK(s == QFT_OK && ex.count == 2 && strcmp(ex.examples[0].text_a, "\"the film 's a mess") == 0 &&
              strcmp(ex.examples[1].text_a, "the \"end\"") == 0 && ex.examples[1].label == 1.0f,
          "quotes: %s", err.message);
    qft_glue_free(&ex);
    qft_glue_free(&ex);  // twice is safe
#undef EXPECT_FAIL
}

static void test_task_info(void) {
    const char *names[] = {"cola", "SST-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli"};
    int labels[] = {2, 2, 2, 1, 2, 3, 2, 2, 2};
    int metric_counts[] = {1, 1, 2, 2, 2, 1, 1, 1, 1};
    for (int i = 0; i < QFT_GLUE_TASK_COUNT; i++) {
        const qft_glue_task_info *info = qft_glue_task_find(names[i]);
        CHECK(info && info->id == (qft_glue_task_id)i && info->num_labels == labels[i] &&
                  info->metric_count == metric_counts[i] && strcmp(info->dir_name, task_dirs[i]) == 0 &&
                  info->is_regression == (i == QFT_GLUE_STSB) && info->has_text_b == (i > QFT_GLUE_SST2),
              "task info %s", names[i]);
        CHECK(qft_glue_task_find(task_dirs[i]) == info, "find by dir name %s", task_dirs[i]);
    }
    CHECK(strcmp(qft_glue_task_find("cola")->metric_names[0], "matthews_correlation") == 0, "cola metric");
    CHECK(strcmp(qft_glue_task_find("mnli")->label_names[0], "contradiction") == 0, "mnli label order");
    CHECK(qft_glue_task_find("glue") == NULL && qft_glue_task_find("") == NULL && qft_glue_task_find(NULL) == NULL,
          "unknown tasks");
    CHECK(strcmp(qft_glue_split_file(qft_glue_task_find("mnli"), QFT_GLUE_DEV), "dev_matched.tsv") == 0 &&
              strcmp(qft_glue_split_file(qft_glue_task_find("rte"), QFT_GLUE_DEV), "dev.tsv") == 0,
          "split file names");
    // The GLUE server's submission names (gluebenchmark.com's sample submission).
    const char *submissions[] = {"CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv",
                                 "MNLI-m.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv"};
    for (int i = 0; i < QFT_GLUE_TASK_COUNT; i++) {
        const qft_glue_task_info *info = qft_glue_task_by_id((qft_glue_task_id)i);
        const char *file = qft_glue_submission_file(info, QFT_GLUE_TEST);
        CHECK(file && strcmp(file, submissions[i]) == 0, "submission file of %s: %s", info->name, file ? file : "NULL");
        CHECK(qft_glue_submission_file(info, QFT_GLUE_DEV) == NULL, "no submission file for %s dev", info->name);
        CHECK((qft_glue_submission_file(info, QFT_GLUE_TEST_MISMATCHED) != NULL) == (i == QFT_GLUE_MNLI),
              "mismatched submission file only for MNLI (%s)", info->name);
    }
    CHECK(strcmp(qft_glue_submission_file(qft_glue_task_find("mnli"), QFT_GLUE_TEST_MISMATCHED), "MNLI-mm.tsv") == 0,
          "MNLI-mm.tsv");
}

int main(void) {
    char root[256];
    qft_test_make_temp_dir(root, sizeof root, "qft_glue");
    write_all_fixtures(root);
    test_task_info();
    test_all_tasks(root);
    char flat[512];
    snprintf(flat, sizeof flat, "%s/flat", root);
    mkdir(flat, 0700);
    test_malformed(flat);
    qft_test_remove_temp_dir(flat);
    for (size_t i = 0; i < sizeof task_dirs / sizeof task_dirs[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, task_dirs[i]);
        qft_test_remove_temp_dir(dir);
    }
    qft_test_remove_temp_dir(root);
    QFT_TEST_SUMMARY();
}
