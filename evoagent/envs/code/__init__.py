"""The code environment: HumanEval and MBPP tasks, agent Python run in a sandbox, recorded LATS and Reflexion runs."""
