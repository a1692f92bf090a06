"""A local emulator of Kaggle's competition and kernels services that the official `kaggle` client
accepts: the tests, `kit emulator` and `make demo` use it, so nothing reaches kaggle.com.

server        Emulator (the HTTP server on 127.0.0.1, its request handler, authentication, RPC
              routing, fault injection), serve (`kit emulator` in the foreground), export_lines
competitions  CompetitionsService: the competition's data files, uploads, submissions, scoring
              against the answer key, leaderboard; competition_files (what `kit emulator` serves)
kernels       KernelsService: pushed kernels, run for real in Kaggle-like session folders; GPU
              session limit and quota; the output files
wire          what the services say alike: the host the client believes it talks to, Kaggle's dates
"""
