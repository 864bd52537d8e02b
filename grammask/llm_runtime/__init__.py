"""llm_runtime"""
