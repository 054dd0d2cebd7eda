"""reelfarm's control plane: manifest → plan → schedule → assemble."""
