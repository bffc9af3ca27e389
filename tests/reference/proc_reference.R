# Reference values from R's pROC package for evaluation/metrics.py (AUC, DeLong variance and CI, the paired
# DeLong test, Youden thresholds) and from base R for the Wilson interval (prop.test without continuity
# correction), Holm's adjustment (p.adjust) and the exact Wilcoxon signed-rank test (wilcox.test).
#
#   Rscript tests/reference/proc_reference.R [OUT_DIR]     (default: the folder of this script)
#
# Writes three data sets as CSV, so the Python tests need no R:
#   proc_asah.csv     pROC's aSAH data (Turck et al. 2010; 113 patients with subarachnoid haemorrhage):
#                     label = outcome "Poor", scores s100b (many ties), ndka, wfns (5 levels)
#   proc_hanley.csv   Hanley & McNeil 1982, Table 1: ratings 1-5 of 109 CT images (58 normal, 51 abnormal)
#   proc_seeded.csv   400 seeded cases (set.seed below), two correlated scores rounded to 1 decimal (ties)
# and proc_reference.csv, one value per row: dataset, score (or "a|b" for a paired test), quantity, k, value.
# Direction is fixed (controls < cases: higher score = positive), never pROC's automatic choice.
# Uses base R and pROC only.

suppressPackageStartupMessages(library(pROC))

args <- commandArgs(trailingOnly = FALSE)
script_dir <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
trailing <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(trailing) >= 1) trailing[1] else script_dir
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

data(aSAH, package = "pROC")
asah <- data.frame(label = as.integer(aSAH$outcome == "Poor"), s100b = aSAH$s100b, ndka = aSAH$ndka,
                   wfns = as.integer(as.character(aSAH$wfns)))
hanley <- data.frame(label = rep(c(0L, 1L), c(58, 51)),
                     rating = c(rep(1:5, c(33, 6, 6, 11, 2)), rep(1:5, c(3, 2, 2, 11, 33))))
set.seed(20251123)
n <- 400
label <- rbinom(n, 1, 0.3)
a <- rnorm(n) + 1.0 * label
b <- 0.6 * a + 0.8 * rnorm(n) + 0.4 * label
seeded <- data.frame(label = label, score_a = round(a, 1), score_b = round(b, 1))

write_data <- function(frame, name) write.csv(frame, file.path(out_dir, name), row.names = FALSE, quote = FALSE)
write_data(asah, "proc_asah.csv")
write_data(hanley, "proc_hanley.csv")
write_data(seeded, "proc_seeded.csv")

rows <- list()
put <- function(dataset, score, quantity, value) {
  rows[[length(rows) + 1]] <<- data.frame(dataset = dataset, score = score, quantity = quantity,
                                          k = seq_along(value), value = as.numeric(value))
}
curve <- function(frame, score) roc(frame$label, frame[[score]], levels = c(0, 1), direction = "<", quiet = TRUE)

single <- function(dataset, frame, score) {
  r <- curve(frame, score)
  put(dataset, score, "auc", as.numeric(auc(r)))
  put(dataset, score, "var_delong", var(r, method = "delong"))
  ci95 <- ci.auc(r, method = "delong", conf.level = 0.95)
  put(dataset, score, "ci95_low", ci95[1])
  put(dataset, score, "ci95_high", ci95[3])
  ci90 <- ci.auc(r, method = "delong", conf.level = 0.90)
  put(dataset, score, "ci90_low", ci90[1])
  put(dataset, score, "ci90_high", ci90[3])
  # every Youden-optimal point (pROC returns all ties)
  best <- coords(r, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"),
                 transpose = FALSE)
  put(dataset, score, "youden_threshold", best$threshold)
  put(dataset, score, "youden_sensitivity", best$sensitivity)
  put(dataset, score, "youden_specificity", best$specificity)
}

paired <- function(dataset, frame, score_a, score_b) {
  ra <- curve(frame, score_a)
  rb <- curve(frame, score_b)
  test <- roc.test(ra, rb, method = "delong", paired = TRUE, conf.level = 0.95)
  key <- paste(score_a, score_b, sep = "|")
  put(dataset, key, "z", test$statistic)         # (AUC_a - AUC_b) / SE
  put(dataset, key, "p", test$p.value)
  put(dataset, key, "diff_low", test$conf.int[1])  # CI of AUC_a - AUC_b
  put(dataset, key, "diff_high", test$conf.int[2])
  put(dataset, key, "cov_delong", cov(ra, rb, method = "delong"))
}

for (score in c("s100b", "ndka", "wfns")) single("asah", asah, score)
paired("asah", asah, "s100b", "ndka")
paired("asah", asah, "wfns", "s100b")
single("hanley", hanley, "rating")
for (score in c("score_a", "score_b")) single("seeded", seeded, score)
paired("seeded", seeded, "score_a", "score_b")

# Wilson score intervals: the worked examples of Newcombe (1998), Table I
for (case in list(c(81, 263), c(15, 148), c(0, 20), c(1, 29), c(29, 29))) {
  interval <- prop.test(case[1], case[2], correct = FALSE)$conf.int
  put("wilson", paste(case, collapse = "/"), "ci95", interval)
}
# Wilcoxon signed-rank test of paired AUC gains (exact: no zeros, no tied magnitudes), for evaluation/sites.py
differences <- c(0.031, -0.012, 0.054, 0.023, 0.047, -0.018, 0.066, 0.009, 0.041, -0.005)
put("wilcoxon", "differences", "input", differences)
put("wilcoxon", "differences", "p_exact", wilcox.test(differences, exact = TRUE)$p.value)
p_values <- c(0.01, 0.04, 0.03, 0.005, 0.2, 0.0001)
put("holm", "p", "input", p_values)
put("holm", "p", "adjusted", p.adjust(p_values, method = "holm"))

reference <- do.call(rbind, rows)
reference$value <- trimws(formatC(reference$value, digits = 17, format = "g"))
write.csv(reference, file.path(out_dir, "proc_reference.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("R %s, pROC %s: %d reference values in %s\n", getRversion(), packageVersion("pROC"), nrow(reference),
            out_dir))
