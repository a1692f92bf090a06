"""Kaggle, through the official `kaggle` client: every call kit makes to kaggle.com.

client        the client itself: credentials, secret scrubbing, error translation (the Kaggle*Error
              KitErrors), retries with backoff, per-session timeouts; username()
competitions  the competition: download, submit, list_submissions, remaining_submissions, leaderboard
kernels       kit remote's kernels: push_kernel, kernel_version / status / log / output, gpu_quota

(The package shares its name with the `kaggle` library; inside it `import kaggle` is absolute
and gets the library.)
"""
