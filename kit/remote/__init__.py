"""`kit remote`: train on Kaggle's GPUs, bring the runs back as local runs.

jobs      the job record: the Job and Kernel dataclasses, their states, to_json/from_json
          (runs/remote/<job>.json), save, load, all_jobs, jobs_dir, work_dir
kernel    what is pushed for one kernel: the generated script (SCRIPT, carrying kit_zip(),
          the kit package zipped), kernel-metadata.json, write_kernel, kernel_job
entry     what runs inside the Kaggle kernel: the competition data verified, each seed
          trained (standard library only at its top; SUMMARY, the kernel's kit-kernel.json)
run       the commands: train, pull, status_lines; pushing (push_waiting, check_quota),
          polling (wait, poll_round, View), finishing a job; parse_seeds, split_seeds,
          remote_config, new_job; a cross-validated group's job (Folds, job_config,
          split_members, new_group: `kit remote train MODEL --folds K`)
install   a finished kernel's output: download_output, verify_run, verify_output,
          install_run, provenance, install_kernel, local_identity
"""
