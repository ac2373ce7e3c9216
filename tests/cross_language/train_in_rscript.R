# A plain `Rscript` run of bridge_training.R's fit_r(): a new R process with
# no special start-up (no LD_PRELOAD, no thread settings), as an R user starts
# it. Arguments: the folder that holds config.json, x.npy and y.npy; the losses
# and weights are written back there as .npy files.
args <- commandArgs(trailingOnly = TRUE)
folder <- args[[1]]
source(file.path(args[[2]], "bridge_training.R"))
np <- reticulate::import("numpy", convert = FALSE)
cfg <- jsonlite::fromJSON(file.path(folder, "config.json"))
x <- reticulate::py_to_r(np$load(file.path(folder, "x.npy")))
y <- reticulate::py_to_r(np$load(file.path(folder, "y.npy")))
result <- fit_r(cfg, x, y, cfg$epochs)
np$save(file.path(folder, "losses.npy"), np$array(result$losses, dtype = "float32"))
for (i in seq_along(result$weights)) {
  np$save(file.path(folder, sprintf("w%03d.npy", i)), np$array(result$weights[[i]],
                                                               dtype = "float32"))
}
