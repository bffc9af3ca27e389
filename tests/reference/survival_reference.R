# Reference values from R's survival package for evaluation/survival.py.
#
#   Rscript tests/reference/survival_reference.R [OUT.json]     (default: survival_reference.json beside this file)
#
# Reads survival_rossi.csv (the Rossi et al. 1980 recidivism data, written from lifelines.datasets.load_rossi;
# the same 432 rows as carData::Rossi / the lifelines docs) and survival_cohort.csv (a seeded synthetic cohort
# written by survival_make_cohort.py). Writes, for each data set: Cox coefficients, standard errors, Wald
# p-values and hazard-ratio CIs (Efron ties, R's default and lifelines'), the log-rank chi-square and p
# (survdiff), Kaplan-Meier estimates at fixed times with log-log ("exponential Greenwood") CIs, which is what
# lifelines' KaplanMeierFitter reports, and the Schoenfeld-residual PH tests of cox.zph.
# Uses base R and survival only (no jsonlite), so it runs on a bare r-base-core + r-cran-survival.

suppressPackageStartupMessages(library(survival))

args <- commandArgs(trailingOnly = FALSE)
script_dir <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
trailing <- commandArgs(trailingOnly = TRUE)
out_path <- if (length(trailing) >= 1) trailing[1] else file.path(script_dir, "survival_reference.json")

to_json <- function(x, indent = "") {
  inner <- paste0(indent, "  ")
  if (is.list(x)) {
    keys <- names(x)
    if (is.null(keys)) {
      items <- vapply(x, to_json, "", indent = inner)
      return(paste0("[\n", inner, paste(items, collapse = paste0(",\n", inner)), "\n", indent, "]"))
    }
    items <- vapply(seq_along(x), function(i) paste0('"', keys[i], '": ', to_json(x[[i]], inner)), "")
    return(paste0("{\n", inner, paste(items, collapse = paste0(",\n", inner)), "\n", indent, "}"))
  }
  if (is.character(x)) {
    values <- paste0('"', x, '"')
  } else {
    values <- ifelse(is.na(x), "null", trimws(formatC(as.numeric(x), digits = 15, format = "g")))
  }
  if (length(x) == 1 && is.null(names(x)) && !inherits(x, "json_array")) return(values)
  if (!is.null(names(x))) {
    return(paste0("{", paste(paste0('"', names(x), '": ', values), collapse = ", "), "}"))
  }
  paste0("[", paste(values, collapse = ", "), "]")
}

json_array <- function(x) structure(x, class = c("json_array", class(x)))  # written as [..] even if length 1

cox_table <- function(fit) {
  s <- summary(fit, conf.int = 0.95)
  co <- s$coefficients
  ci <- s$conf.int
  column <- function(x) json_array(unname(x))
  list(terms = json_array(rownames(co)), coef = column(co[, "coef"]), se = column(co[, "se(coef)"]),
       p = column(co[, "Pr(>|z|)"]), hr = column(ci[, "exp(coef)"]),
       hr_low = column(ci[, "lower .95"]), hr_high = column(ci[, "upper .95"]),
       loglik = unname(fit$loglik[2]), ties = fit$method)
}

logrank <- function(formula, data) {
  test <- survdiff(formula, data = data)
  list(chisq = unname(test$chisq), df = length(test$n) - 1,
       p = pchisq(test$chisq, df = length(test$n) - 1, lower.tail = FALSE),
       observed = unname(test$obs), expected = unname(test$exp))
}

km_at <- function(formula, data, times) {
  fit <- survfit(formula, data = data, conf.type = "log-log")
  s <- summary(fit, times = times, extend = TRUE)
  groups <- sub("^.*=", "", as.character(s$strata))
  out <- list()
  for (g in unique(groups)) {
    keep <- groups == g
    out[[g]] <- list(time = s$time[keep], survival = s$surv[keep], ci_low = s$lower[keep],
                     ci_high = s$upper[keep], at_risk = s$n.risk[keep])
  }
  table <- summary(fit)$table
  strata <- sub("^.*=", "", rownames(table))
  median <- list()
  for (i in seq_along(strata)) {
    median[[strata[i]]] <- c(estimate = unname(table[i, "median"]), ci_low = unname(table[i, "0.95LCL"]),
                             ci_high = unname(table[i, "0.95UCL"]))
  }
  list(times = times, groups = out, median = median)
}

zph <- function(fit, transform) {
  z <- cox.zph(fit, transform = transform, terms = FALSE)
  list(transform = transform, terms = rownames(z$table), chisq = unname(z$table[, "chisq"]),
       p = unname(z$table[, "p"]))
}

# The Grambsch-Therneau (1994) approximate test, as cox.zph computed it before survival 3.0 and as lifelines'
# proportional_hazard_test computes it: scaled Schoenfeld residuals use the overall variance matrix instead of
# the per-event-time one. survival >= 3.0's cox.zph (zph above) is the exact score test, so the two differ.
zph_approx <- function(fit, transform) {
  sresid <- as.matrix(residuals(fit, "schoenfeld"))
  ndead <- nrow(sresid)
  times <- as.numeric(rownames(sresid))
  g <- switch(transform,
    identity = times,
    rank = rank(times),
    km = {
      km_fit <- survfit(fit$y ~ 1)
      has_event <- km_fit$n.event > 0
      1 - rep(c(1, km_fit$surv[has_event]), c(km_fit$n.event[has_event], 0))  # left-continuous KM
    })
  xx <- g - mean(g)
  r2 <- sresid %*% fit$var * ndead
  test <- drop(xx %*% r2)
  chisq <- test^2 / (diag(fit$var) * ndead * sum(xx^2))
  unscaled <- drop(xx %*% sresid)
  global <- drop(unscaled %*% fit$var %*% unscaled) * ndead / sum(xx^2)
  list(transform = transform, terms = json_array(names(coef(fit))), chisq = json_array(unname(chisq)),
       p = json_array(pchisq(unname(chisq), 1, lower.tail = FALSE)),
       global_chisq = global, global_df = length(test), global_p = pchisq(global, length(test), lower.tail = FALSE))
}

rossi <- read.csv(file.path(script_dir, "survival_rossi.csv"))
rossi_fit <- coxph(Surv(week, arrest) ~ fin + age + prio, data = rossi)
rossi_full <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = rossi)
rossi_full_breslow <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = rossi,
                            ties = "breslow")  # to show that the tie method matters on these data

cohort <- read.csv(file.path(script_dir, "survival_cohort.csv"), stringsAsFactors = FALSE)
cohort$site <- factor(cohort$site)  # reference level = first in sorted order, as in evaluation/survival.py
cohort_uni <- coxph(Surv(time_days, event) ~ abnormal, data = cohort)
cohort_adj <- coxph(Surv(time_days, event) ~ abnormal + age_years + site, data = cohort)

result <- list(
  generated_by = "tests/reference/survival_reference.R",
  r_version = R.version.string,
  survival_version = as.character(packageVersion("survival")),
  rossi = list(
    cox = cox_table(rossi_fit),
    cox_full = cox_table(rossi_full),
    cox_full_breslow = cox_table(rossi_full_breslow),
    logrank_fin = logrank(Surv(week, arrest) ~ fin, rossi),
    km_fin = km_at(Surv(week, arrest) ~ fin, rossi, c(10, 20, 30, 40, 52)),
    zph_km = zph(rossi_fit, "km"),
    zph_rank = zph(rossi_fit, "rank"),
    zph_identity = zph(rossi_fit, "identity"),
    zph_approx_km = zph_approx(rossi_fit, "km"),
    zph_approx_rank = zph_approx(rossi_fit, "rank"),
    zph_approx_identity = zph_approx(rossi_fit, "identity")
  ),
  cohort = list(
    cox_univariable = cox_table(cohort_uni),
    cox_adjusted = cox_table(cohort_adj),
    logrank = logrank(Surv(time_days, event) ~ abnormal, cohort),
    km = km_at(Surv(time_days, event) ~ abnormal, cohort, c(90, 365, 730, 1095)),
    zph_km_univariable = zph(cohort_uni, "km"),
    zph_km_adjusted = zph(cohort_adj, "km"),
    zph_approx_km_univariable = zph_approx(cohort_uni, "km"),
    zph_approx_km_adjusted = zph_approx(cohort_adj, "km")
  )
)

writeLines(to_json(result), out_path)
cat("wrote", out_path, "\n")
